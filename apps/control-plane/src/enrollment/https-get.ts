import { request } from 'node:https';

const MAX_BYTES = 512 * 1024;

/**
 * GET over https with an optional CA bundle, as a fetch Response (what jose's remote JWKS
 * expects). Node's global fetch cannot take a per-request CA, and issuers of private clusters
 * are signed by the cluster's own CA. Redirects are not followed; bodies are capped.
 */
export function httpsGet(url: string, opts: { ca?: string; signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'GET',
        headers: { accept: 'application/json, application/jwk-set+json' },
        ...(opts.ca ? { ca: opts.ca } : {}),
        timeout: opts.timeoutMs ?? 5_000,
        signal: opts.signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BYTES) req.destroy(new Error(`response from ${url} is larger than ${MAX_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () =>
          resolve(
            new Response(Buffer.concat(chunks), {
              status: res.statusCode ?? 502,
              headers: { 'content-type': String(res.headers['content-type'] ?? 'application/octet-stream') },
            }),
          ),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within the timeout`)));
    req.on('error', reject);
    req.end();
  });
}
