// Jest global setup. Jest loads this file outside its ESM module system, where our
// TypeScript sources cannot be resolved; so it compiles the tree (SWC, ~0.2 s) and starts the
// services from dist/. Workers are forked afterwards and inherit the environment set here.
import { execFileSync } from 'node:child_process';

export default async function globalSetup() {
  execFileSync(process.execPath, [new URL('../../.ci/build.mjs', import.meta.url).pathname], { stdio: 'inherit' });
  const { startServices } = await import('../../dist/tests/harness/services.js');
  const services = await startServices();
  process.env.SIGIL_TEST_ENV_FILE = services.envFile;
  process.env.SOFTHSM2_CONF = services.env.hsm.conf;
  globalThis.__SIGIL_TEST_SERVICES__ = services;
}
