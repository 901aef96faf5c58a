// The control plane's REST API as TypeScript types, generated from its OpenAPI document: the CLI
// and the console are typed by the same file, so neither can drift from the API (`make check`
// fails when the file is stale).
export type { components, paths } from './gen/openapi.js';
