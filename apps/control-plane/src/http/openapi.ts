import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { createLogger } from '@sigil/logging';
import { AppModule } from '../app.module.js';
import { ProblemView } from '../common/api-problems.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { loadConfig } from '../config/sigil-config.js';

export const API_PREFIX = 'api/v1';

/** Routes outside the versioned prefix (probes and metrics). */
export const UNPREFIXED_ROUTES = ['healthz', 'readyz', 'metrics'];

/** The REST API's OpenAPI document: served at /api/docs-json and the source of the CLI's types. */
export function openApiDocument(app: INestApplication): OpenAPIObject {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Sigil control plane')
      .setDescription('Configure application secrets, publish them to clusters, follow delivery. Secret values are write-only.')
      .setVersion(process.env.npm_package_version ?? '0.1.0')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'API token (sgl_…)' })
      // The console's alternative to the bearer token (POST /api/v1/console/session); mutations
      // made with it also need the session's CSRF token in X-CSRF-Token.
      .addCookieAuth(SESSION_COOKIE, {
        type: 'apiKey',
        in: 'cookie',
        description: 'console session cookie; every POST, PUT, PATCH and DELETE made with it needs X-CSRF-Token',
      })
      .build(),
    { extraModels: [ProblemView] },
  );
  // Whatever takes the bearer token also takes the console's session cookie (the guard accepts
  // either; decision 021), so every such operation lists both as alternatives.
  for (const ops of Object.values(document.paths))
    for (const op of Object.values(ops as Record<string, { security?: Array<Record<string, string[]>> }>))
      // A new array: swagger shares one between a controller's operations.
      if (op.security?.some((s) => 'bearer' in s) && !op.security.some((s) => SESSION_COOKIE in s))
        op.security = [...op.security, { [SESSION_COOKIE]: [] }];
  return document;
}

/** The console's session cookie (auth/console-cookie.ts; http/ depends on no feature, hence the literal). */
const SESSION_COOKIE = '__Host-sigil_session';

/**
 * The same document without PostgreSQL, Redis or an HSM: Nest's preview mode reads the module
 * graph and the decorators but instantiates no provider, so nothing connects anywhere. Used by
 * `make generate` and the staleness check (.ci/openapi.mjs).
 */
export async function previewOpenApiDocument(): Promise<OpenAPIObject> {
  const unused = 'unused://preview';
  const config = new RuntimeConfig(loadConfig({}), {
    databaseUrl: unused,
    redisUrl: unused,
    hsmToken: { module: unused, tokenLabel: unused, pin: { value: unused } },
  });
  const app = await NestFactory.create(AppModule.register(config, createLogger('openapi', 'silent')), {
    preview: true,
    logger: false,
    abortOnError: false,
  });
  app.setGlobalPrefix(API_PREFIX, { exclude: UNPREFIXED_ROUTES });
  try {
    return openApiDocument(app);
  } finally {
    await app.close();
  }
}
