// Serves the web console (apps/console, built by Vite into dist/console) at /console/, from the
// same origin as the API so the session cookie (SameSite=Strict) and CSRF header just work.
// Hashed assets are cached for a year; index.html is revalidated every time, so a deploy takes
// effect on the next load. Every response carries a strict Content-Security-Policy: scripts,
// styles, fonts and API calls from this origin only, nothing inline, no framing.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { problem } from './problem-details.filter.js';

export const CONSOLE_PATH = '/console';

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  // Blueprint's stylesheet draws a few controls (checkbox ticks, select carets) as data: SVGs.
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** dist/console beside the compiled control plane (dist/apps/control-plane/src/http), or SIGIL_CONSOLE_DIR. */
export function consoleDirectory(): string {
  return process.env.SIGIL_CONSOLE_DIR ?? fileURLToPath(new URL('../../../../console', import.meta.url));
}

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  next();
}

/** The console's routes, or `undefined` when it was not built (the API works without it). */
export function consoleRouter(dir = consoleDirectory()): Router | undefined {
  const index = path.join(dir, 'index.html');
  if (!existsSync(index)) return undefined;
  const router = express.Router();
  router.use(securityHeaders);
  // Vite names every asset by its content hash: a changed file is a new URL.
  router.use(
    '/assets',
    express.static(path.join(dir, 'assets'), { immutable: true, maxAge: '365d', index: false, fallthrough: false, dotfiles: 'deny' }),
  );
  // An asset that is not there (an old page asking for a file of a previous deploy, say) is a
  // problem+json 404 like the API's, not express's HTML page.
  router.use('/assets', (err: { status?: number }, _req: Request, res: Response, next: NextFunction) => {
    const status = err.status ?? 500;
    if (status !== 404 && status !== 403) return next(err);
    res.setHeader('Cache-Control', 'no-store');
    res
      .status(status)
      .type('application/problem+json')
      .send(JSON.stringify(problem(status, status === 404 ? 'not_found' : 'forbidden', 'no such console asset; reload the console')));
  });
  // Everything else is a route of the single-page app: the same index.html, always revalidated.
  router.get(/.*/, (req, res) => {
    if (req.originalUrl === CONSOLE_PATH) return res.redirect(301, `${CONSOLE_PATH}/`);
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(index);
  });
  return router;
}
