import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import type { ApiClient } from '../harness/api-client.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { eventually } from '../harness/eventually.js';
import { databaseDump } from '../harness/secret-scan.js';
import { uniqueName } from '../harness/test-env.js';

// Console sessions (decision 021) against a real control plane: an API token is exchanged once
// for an HttpOnly, Secure, SameSite=Strict cookie; every mutation made with the cookie needs the
// session's CSRF token; roles apply exactly as with the token; sign-out, token revocation, the
// idle timeout and the absolute expiry each end the session at the server.

const COOKIE = '__Host-sigil_session';
const HINT = '__Host-sigil_signed_in';

/** A browser's view of one session: the cookie it holds and the CSRF token the page keeps. */
class Browser {
  cookie: string | undefined;
  csrf: string | undefined;
  constructor(readonly api: ApiClient) {}

  async signIn(token: string, headers: Record<string, string> = {}) {
    const r = await this.api.as(undefined).post('/console/session', { token }, headers);
    const set = r.headers.getSetCookie()[0] ?? '';
    const m = new RegExp(`^${COOKIE}=([^;]+)`).exec(set);
    if (r.status === 201 && m) {
      this.cookie = m[1];
      this.csrf = r.body.csrfToken;
    }
    return { ...r, setCookie: set };
  }

  request(method: string, path: string, body?: unknown, { csrf = true }: { csrf?: boolean } = {}) {
    const headers: Record<string, string> = { Cookie: `${COOKIE}=${this.cookie}` };
    if (csrf && this.csrf) headers['X-CSRF-Token'] = this.csrf;
    return this.api.as(undefined).request(method, path, body, headers);
  }
}

describe('console sessions', () => {
  let cp: RunningControlPlane;
  let db: pg.Client;
  const project = uniqueName('console');
  let viewerToken: string;

  beforeAll(async () => {
    cp = await startControlPlane({ SIGIL_CONSOLE_SESSION_IDLE_S: '60', SIGIL_CONSOLE_SESSION_MAX_S: '3600' });
    db = new pg.Client({ connectionString: cp.databaseUrl });
    await db.connect();
    const t = await cp.admin.post('/tokens', { name: 'console-viewer', role: 'viewer' });
    expect(t.status).toBe(201);
    viewerToken = t.body.token;
  }, 120_000);

  afterAll(async () => {
    await db?.end();
    await cp?.stop();
  });

  it('signs in with a token: a __Host- cookie that is HttpOnly, Secure, SameSite=Strict; the answer holds the CSRF token and the role, never the token', async () => {
    const b = new Browser(cp.admin);
    const r = await b.signIn(cp.admin.token!);
    expect(r.status).toBe(201);
    expect(r.setCookie).toMatch(new RegExp(`^${COOKIE}=[A-Za-z0-9_-]{43}; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Strict$`));
    // Beside it, the page's hint that a session may be held: no secret in it, and not HttpOnly.
    expect(r.headers.getSetCookie()).toEqual([r.setCookie, `${HINT}=1; Max-Age=3600; Path=/; Secure; SameSite=Strict`]);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.body).toMatchObject({
      csrfToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      idleTimeoutSeconds: 60,
      actor: { role: 'admin', projectId: null, permissions: expect.arrayContaining(['secrets:write', 'root-keys:manage']) },
    });
    expect(Date.parse(r.body.expiresAt) - Date.now()).toBeGreaterThan(3500_000);
    expect(r.text).not.toContain(cp.admin.token!);
    // Reads need only the cookie; after a reload the page gets the same CSRF token back.
    expect((await b.request('GET', '/projects')).status).toBe(200);
    const current = await b.request('GET', '/console/session');
    expect(current.status).toBe(200);
    expect(current.body.csrfToken).toBe(b.csrf);
    // Only the secret's hash is stored: neither the cookie nor the token is in the database.
    const dump = await databaseDump(cp.databaseUrl);
    expect(dump).not.toContain(b.cookie!);
    expect(dump).not.toContain(cp.admin.token!);
  });

  it('a mutation with the cookie needs the CSRF token: without it or with another 403 csrf_failed, and nothing changes', async () => {
    const b = new Browser(cp.admin);
    await b.signIn(cp.admin.token!);
    const none = await b.request('POST', '/projects', { name: project }, { csrf: false });
    expect(none.status).toBe(403);
    expect(none.body.code).toBe('csrf_failed');
    const other = new Browser(cp.admin);
    await other.signIn(cp.admin.token!);
    const forged = await b.api
      .as(undefined)
      .request('POST', '/projects', { name: project }, { Cookie: `${COOKIE}=${b.cookie}`, 'X-CSRF-Token': other.csrf! });
    expect(forged.status).toBe(403);
    expect((await cp.admin.get(`/projects/${project}`)).status).toBe(404);
    const ok = await b.request('POST', '/projects', { name: project });
    expect(ok.status).toBe(201);
    // The audit log names the token behind the session, and the refused attempts as denied.
    // Outcome records are written once their response is sent (group commit): wait for them.
    const audit = await eventually('the refusals and the sign-in are audited', async () => {
      const items = (await cp.admin.get('/audit?limit=200')).body.items as Array<{ action: string; outcome: string }>;
      const denied = items.filter((e) => e.action === 'project.create' && e.outcome === 'denied').length;
      return denied >= 2 && items.some((e) => e.action === 'console.sign_in' && e.outcome === 'success') ? items : undefined;
    });

    expect(audit.filter((e) => e.action === 'project.create' && e.outcome === 'denied').length).toBeGreaterThanOrEqual(2);
    // Sign-in: the attempt is recorded before the session exists, then the outcome.
    expect(audit.some((e) => e.action === 'console.sign_in' && e.outcome === 'attempted')).toBe(true);
    expect(audit.some((e) => e.action === 'console.sign_in' && e.outcome === 'success')).toBe(true);
  });

  it("a viewer's session reads but may not change anything (403 forbidden, CSRF token or not)", async () => {
    const b = new Browser(cp.admin);
    const r = await b.signIn(viewerToken);
    expect(r.body.actor.role).toBe('viewer');
    expect(r.body.actor.permissions).not.toContain('apps:write');
    expect((await b.request('GET', '/projects')).status).toBe(200);
    const write = await b.request('POST', `/projects/${project}/apps`, { name: 'web', namespace: 'web' });
    expect(write.status).toBe(403);
    expect(write.body.code).toBe('forbidden');
  });

  it('sign-out ends the session at the server: the old cookie is refused afterwards, and the cookie is cleared', async () => {
    const b = new Browser(cp.admin);
    await b.signIn(cp.admin.token!);
    expect((await b.request('DELETE', '/console/session', undefined, { csrf: false })).status).toBe(403);
    const out = await b.request('DELETE', '/console/session');
    expect(out.status).toBe(204);
    expect(out.headers.getSetCookie()).toEqual([
      `${COOKIE}=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Strict`,
      `${HINT}=; Max-Age=0; Path=/; Secure; SameSite=Strict`,
    ]);
    const after = await b.request('GET', '/projects');
    expect(after.status).toBe(401);
    expect(after.body.code).toBe('unauthenticated');
    expect(after.headers.getSetCookie().map((c) => c.split(';')[0])).toEqual([`${COOKIE}=`, `${HINT}=`]);
    // The hint alone is no credential: a 401 that clears it.
    const hintOnly = await cp.admin.as(undefined).request('GET', '/console/session', undefined, { Cookie: `${HINT}=1` });
    expect(hintOnly.status).toBe(401);
    expect(hintOnly.headers.getSetCookie().map((c) => c.split(';')[0])).toEqual([`${COOKIE}=`, `${HINT}=`]);
  });

  it('revoking the token ends its sessions at once', async () => {
    const t = await cp.admin.post('/tokens', { name: 'console-short', role: 'operator' });
    const b = new Browser(cp.admin);
    await b.signIn(t.body.token);
    expect((await b.request('GET', '/projects')).status).toBe(200);
    expect((await cp.admin.delete(`/tokens/${t.body.id}`)).status).toBe(204);
    expect((await b.request('GET', '/projects')).status).toBe(401);
  });

  it('ends after the idle timeout and at the absolute expiry', async () => {
    const idle = new Browser(cp.admin);
    await idle.signIn(cp.admin.token!);
    const expired = new Browser(cp.admin);
    await expired.signIn(cp.admin.token!);
    // Time moved on for the rows instead of the test waiting a minute.
    await db.query(`UPDATE console_sessions SET last_seen_at = now() - interval '61 seconds' WHERE csrf_token = $1`, [idle.csrf]);
    await db.query(`UPDATE console_sessions SET expires_at = now() - interval '1 second' WHERE csrf_token = $1`, [expired.csrf]);
    expect((await idle.request('GET', '/projects')).status).toBe(401);
    expect((await expired.request('GET', '/projects')).status).toBe(401);
    // A session in use stays alive: its last-seen time moves on (at most every 30 s).
    const active = new Browser(cp.admin);
    await active.signIn(cp.admin.token!);
    await db.query(`UPDATE console_sessions SET last_seen_at = now() - interval '45 seconds' WHERE csrf_token = $1`, [active.csrf]);
    expect((await active.request('GET', '/projects')).status).toBe(200);
    const { rows } = await db.query<{ age: number }>(
      `SELECT extract(epoch FROM now() - last_seen_at)::float AS age FROM console_sessions WHERE csrf_token = $1`,
      [active.csrf],
    );
    expect(rows[0]!.age).toBeLessThan(5);
  });

  it('refuses a bad token (401), a malformed one (400), and a sign-in from another origin (403)', async () => {
    const b = new Browser(cp.admin);
    const bad = await b.signIn(`sgl_${'x'.repeat(40)}`);
    expect(bad.status).toBe(401);
    expect(bad.setCookie).toBe('');
    expect((await b.signIn('short')).status).toBe(400);
    const cross = await b.signIn(cp.admin.token!, { Origin: 'https://evil.example' });
    expect(cross.status).toBe(403);
    expect(cross.body.code).toBe('csrf_failed');
    expect(cross.setCookie).toBe('');
    // Two session cookies in one request (a sibling subdomain's sent first): neither counts.
    const good = new Browser(cp.admin);
    await good.signIn(cp.admin.token!);
    const twice = await good.api.as(undefined).get('/projects', { Cookie: `${COOKIE}=${'b'.repeat(43)}; ${COOKIE}=${good.cookie}` });
    expect(twice.status).toBe(401);
    // Signing in again from the same browser ends the session it had.
    const again = await good.api.as(undefined).post('/console/session', { token: cp.admin.token! }, { Cookie: `${COOKIE}=${good.cookie}` });
    expect(again.status).toBe(201);
    expect((await good.request('GET', '/projects')).status).toBe(401);
    // The bearer token still works as before, and takes precedence over a cookie.
    expect((await cp.admin.get('/projects', { Cookie: `${COOKIE}=${'a'.repeat(43)}` })).status).toBe(200);
  });
});
