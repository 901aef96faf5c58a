import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Request, Response } from 'express';
import { SwaggerModule } from '@nestjs/swagger';
import { Logger as PinoNestLogger, PinoLogger } from 'nestjs-pino';
import { MAX_SECRET_PAYLOAD_BYTES } from '@sigil/agent-protocol';
import type { Logger } from '@sigil/logging';
import { AppModule } from '../app.module.js';
import type { RuntimeConfig } from '../config/runtime-config.js';
import { API_PREFIX, UNPREFIXED_ROUTES, openApiDocument } from './openapi.js';
import { CONSOLE_PATH, consoleRouter } from './console-assets.js';
import { ProblemDetailsFilter, problem } from './problem-details.filter.js';

/** A request with a body must say it is JSON; anything else is refused before parsing. */
function requireJsonBodies(req: Request, res: Response, next: () => void): void {
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (hasBody && type !== 'application/json' && !/^application\/[a-z0-9.+-]*\+json$/.test(type)) {
    res
      .status(415)
      .type('application/problem+json')
      .send(JSON.stringify({ ...problem(415, 'unsupported_media_type', 'request bodies must be application/json'), instance: req.path }));
    return;
  }
  next();
}
/**
 * Largest request body. Any secret the API accepts (encoded payload ≤ MAX_SECRET_PAYLOAD_BYTES)
 * fits as `binaryData`, whose JSON is the payload's own shape, with room for the name and type;
 * text in `data` that JSON escapes heavily may need `binaryData` instead. Beyond it: 413
 * payload_too_large as problem+json, before anything is parsed or written.
 */
export const BODY_LIMIT = MAX_SECRET_PAYLOAD_BYTES + 64 * 1024;

/** Builds the Nest application (initialised: PostgreSQL, Redis and the HSM connected; not yet listening). */
export async function createHttpApp(config: RuntimeConfig, logger: Logger): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.register(config, logger), {
    bufferLogs: true,
    bodyParser: false,
    abortOnError: false,
  });
  app.useLogger(app.get(PinoNestLogger));
  app.use(requireJsonBodies);
  app.useBodyParser('json', { limit: BODY_LIMIT, type: ['application/json', 'application/*+json'] });
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.setGlobalPrefix(API_PREFIX, { exclude: UNPREFIXED_ROUTES });
  app.useGlobalFilters(new ProblemDetailsFilter(await app.resolve(PinoLogger)));

  const document = openApiDocument(app);
  SwaggerModule.setup('api/docs', app, document, { jsonDocumentUrl: 'api/docs-json', yamlDocumentUrl: 'api/docs-yaml' });
  // The web console (when built): static files and its single-page routes; `/` leads there.
  const consoleRoutes = consoleRouter();
  if (consoleRoutes) {
    app.use(CONSOLE_PATH, consoleRoutes);
    app.use((req: Request, res: Response, next: () => void) =>
      req.method === 'GET' && req.path === '/' ? res.redirect(302, `${CONSOLE_PATH}/`) : next(),
    );
  }
  await app.init();
  // Nest answers unknown paths under the API prefix; this covers every other path.
  app.use((req: Request, res: Response) => {
    res
      .status(404)
      .type('application/problem+json')
      .send(JSON.stringify({ ...problem(404, 'not_found', `no route ${req.method} ${req.path}`), instance: req.path }));
  });
  return app;
}
