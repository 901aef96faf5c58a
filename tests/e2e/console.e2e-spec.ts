import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { AgentProcess } from '../harness/agent-process.js';
import { REPO_ROOT } from '../harness/control-plane-process.js';
import { eventually } from '../harness/eventually.js';
import { KubeApiServer } from '../harness/kube-apiserver.js';
import { ADMIN_TOKEN, startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { databaseDump, redisDump, spellings } from '../harness/secret-scan.js';
import { kubeConfig, uniqueName } from '../harness/test-env.js';

// The web console in Debian's headless Chromium, against a real control plane and two real
// agents, each in its own real cluster (the harness' kube-apiserver and a second one started
// here): an operator signs in, creates an app and a secret, publishes to both clusters and
// watches them turn provisioned without reloading, rotates, unpublishes; a viewer sees no
// mutation controls and is refused when it forges one; the values typed in are found nowhere.
// The screenshots in docs/console/ are taken by this run.

const CHROMIUM = process.env.SIGIL_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.join(REPO_ROOT, 'docs/console');
const CANARY_V1 = `console-canary-v1-${Math.random().toString(36).slice(2, 12)}`;
const CANARY_V2 = `console-canary-v2-${Math.random().toString(36).slice(2, 12)}`;
/** A database connection's admin password, replaced through the console: found nowhere afterwards either. */
const CANARY_PASSWORD = `console-canary-pw-${Math.random().toString(36).slice(2, 12)}`;
const T = 45_000;

describe('web console (real browser)', () => {
  let cp: RunningControlPlane;
  let second: KubeApiServer;
  let secondDir: string;
  let secondKubeconfig: string;
  let browser: Browser;
  let operator: BrowserContext;
  let page: Page;
  const agents: AgentProcess[] = [];
  const ns = uniqueName('shop').slice(0, 40);
  const project = uniqueName('console').slice(0, 30);
  const app = 'checkout';
  const clusters = [uniqueName('store-a').slice(0, 40), uniqueName('store-b').slice(0, 40)];
  const cores: k8s.CoreV1Api[] = [];
  /** Every API response body the browser received, and everything it logged. */
  const responses: string[] = [];
  const consoleMessages: string[] = [];

  const watch = (p: Page) => {
    p.on('console', (m) => consoleMessages.push(`${m.type()}: ${m.text()} @ ${m.location().url}`));
    p.on('pageerror', (e) => consoleMessages.push(`pageerror: ${e.message}`));
    p.on('response', (r) => {
      if (!new URL(r.url()).pathname.startsWith('/api/') || r.url().endsWith('/events')) return;
      r.text().then(
        (t) => responses.push(t),
        () => undefined,
      );
    });
  };
  /** A screenshot once dialogs have finished opening (Blueprint animates them). */
  const shot = async (name: string) => {
    await page.locator('.bp6-overlay-appear-active, .bp6-overlay-enter-active').first().waitFor({ state: 'detached' });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), animations: 'disabled' });
  };
  const readSecret = (i: number) => cores[i]!.readNamespacedSecret({ namespace: ns, name: 'checkout-db' }).catch(() => undefined);
  const value = (s: k8s.V1Secret | undefined) => (s?.data?.PASSWORD ? Buffer.from(s.data.PASSWORD, 'base64').toString() : undefined);

  async function signIn(context: BrowserContext, token: string): Promise<Page> {
    const p = await context.newPage();
    watch(p);
    await p.goto(`${cp.cp.url}/`);
    await p.getByLabel('API token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { name: 'Projects', exact: true }).waitFor({ timeout: T });
    return p;
  }

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    cores.push((await kubeConfig()).makeApiClient(k8sLib.CoreV1Api));
    secondDir = await mkdtemp(path.join(tmpdir(), 'sigil-console-kube-'));
    second = new KubeApiServer(secondDir);
    const info = await second.start();
    secondKubeconfig = info.kubeconfig;
    const kc = new k8sLib.KubeConfig();
    kc.loadFromFile(secondKubeconfig);
    cores.push(kc.makeApiClient(k8sLib.CoreV1Api));
    for (const core of cores) await core.createNamespace({ body: { metadata: { name: ns } } });

    cp = await startControlPlane();
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-console-'));
    const caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, (await cp.admin.get('/agents/trust')).body.caCertificatePem);
    for (const [i, cluster] of clusters.entries()) {
      expect(
        (await cp.admin.post('/clusters', { name: cluster, labels: { tier: 'store', region: i ? 'eu-north' : 'eu-west' } })).status,
      ).toBe(201);
      const tokenFile = path.join(dir, `token-${i}`);
      await writeFile(tokenFile, (await cp.admin.post(`/clusters/${cluster}/enrollment-tokens`)).body.token, { mode: 0o600 });
      agents.push(
        await AgentProcess.start({
          controlPlane: cp.cp.grpcAddress,
          caFile,
          cluster,
          enrollmentTokenFile: tokenFile,
          stateDir: path.join(dir, `state-${i}`),
          namespaces: [ns],
          ...(i === 1 ? { kubeconfig: secondKubeconfig } : {}),
        }),
      );
    }
    for (const cluster of clusters)
      await eventually(`${cluster} enrolled`, async () =>
        (await cp.admin.get(`/clusters/${cluster}`)).body.state === 'enrolled' ? true : undefined,
      );

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    operator = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    page = await operator.newPage();
    watch(page);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(agents.map((a) => a.stop()));
    await cp?.stop();
    await second?.stop();
    if (secondDir) await rm(secondDir, { recursive: true, force: true });
  });

  it('serves the console with a strict CSP, hashed assets cached for a year and index.html revalidated', async () => {
    const index = await fetch(`${cp.cp.url}/console/`);
    expect(index.status).toBe(200);
    const csp = index.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    const asset = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    const js = await fetch(`${cp.cp.url}${asset}`);
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const missing = await fetch(`${cp.cp.url}/console/assets/nope.js`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await missing.json()).toMatchObject({ status: 404, code: 'not_found' });
    // A deep link is the app too; `/` leads to the console.
    expect((await fetch(`${cp.cp.url}/console/projects/x/apps/y/fleet`)).status).toBe(200);
    expect((await fetch(`${cp.cp.url}/`, { redirect: 'manual' })).headers.get('location')).toBe('/console/');
  });

  it('an operator signs in, creates a project, an app and a secret, and publishes to two clusters by label with a preview', async () => {
    await page.goto(`${cp.cp.url}/console/`);
    await page.getByLabel('API token').waitFor();
    await shot('sign-in');
    await page.getByLabel('API token').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Projects', exact: true }).waitFor({ timeout: T });
    // The token is not kept by the page once sent.
    expect(await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }))).toBe('{}{}');
    const cookies = await operator.cookies();
    // The session (HttpOnly) and the page's hint that one is held (no secret in it).
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite, c.name.endsWith('signed_in') ? c.value : '']).sort()).toEqual([
      ['__Host-sigil_session', true, 'Strict', ''],
      ['__Host-sigil_signed_in', false, 'Strict', '1'],
    ]);

    await page.getByRole('button', { name: 'New project' }).click();
    await page.getByLabel('Name', { exact: true }).fill(project);
    await page.getByRole('button', { name: 'Create project' }).click();
    await page.getByRole('heading', { name: project }).waitFor();
    await page.getByRole('tab', { name: 'Placement rules' }).click();
    await page.getByLabel("Namespaces this project's apps may use").fill(ns);
    await page.getByRole('button', { name: 'Save namespaces' }).click();
    await page.getByText('Namespaces saved').waitFor();
    await page.getByRole('button', { name: 'Save cluster selector' }).click(); // {} : every cluster
    await page.getByText('Cluster selector saved').waitFor();

    await page.getByRole('tab', { name: 'Apps' }).click();
    await page.getByRole('button', { name: 'New app' }).click();
    await page.getByLabel('Name', { exact: true }).fill(app);
    await page.getByLabel('Namespace', { exact: true }).fill(ns);
    await page.getByRole('button', { name: 'Create app' }).click();
    await page.getByRole('heading', { name: app }).waitFor();

    await page.getByRole('button', { name: 'Add secret' }).click();
    await page.getByLabel('Name', { exact: true }).fill('checkout-db');
    await page.getByLabel('Key 1', { exact: true }).fill('PASSWORD');
    const valueField = page.getByLabel('Value of PASSWORD', { exact: true });
    expect(await valueField.getAttribute('type')).toBe('password'); // masked while typed
    await valueField.pressSequentially(CANARY_V1);
    await page.getByRole('button', { name: 'Encrypt and save' }).click();
    await page.getByRole('heading', { name: /checkout-db/ }).waitFor();
    await shot('app-secrets');

    await page.getByRole('button', { name: 'Publish' }).first().click();
    await page.getByLabel('And/or every cluster with these labels').fill('tier=store');
    const preview = page.getByTestId('publish-preview');
    await preview.getByText('Would reach 2 cluster(s)').waitFor({ timeout: T });
    for (const c of clusters) await preview.getByText(c).waitFor();
    await shot('publish-preview');
    await page.getByRole('button', { name: 'Publish to 2 clusters' }).click();

    await page.getByRole('tab', { name: 'Fleet' }).click();
    await page.getByTestId('fleet-live').getByText('live').waitFor({ timeout: T });
    for (const c of clusters) await page.locator(`[data-cluster="${c}"][data-state="provisioned"]`).waitFor({ timeout: T });
    await page.getByTestId('fleet-summary').getByText('converged').waitFor();
    expect(await page.getByTestId('fleet-placement').innerText()).toBe('Published to every cluster with tier=store');
    await shot('fleet');
    for (const i of [0, 1]) expect(value(await readSecret(i))).toBe(CANARY_V1);
  }, 180_000);

  it('rotating shows the new version applied in both clusters without a reload; unpublishing shows them deprovisioned', async () => {
    await page.getByRole('tab', { name: 'Secrets' }).click();
    await page.getByRole('button', { name: 'Rotate' }).click();
    await page.getByLabel('Value of PASSWORD', { exact: true }).pressSequentially(CANARY_V2);
    await page.getByRole('button', { name: 'Encrypt and save' }).click();
    await page.getByText('checkout-db rotated').waitFor();
    await page.getByRole('button', { name: 'Versions' }).click();
    await page.getByText('Roll back to v1').waitFor();

    await page.getByRole('tab', { name: 'Fleet' }).click();
    const loads = responses.length;
    for (const c of clusters)
      await page.locator(`[data-cluster="${c}"][data-state="provisioned"]`).getByText('checkout-db v2').waitFor({ timeout: T });
    for (const i of [0, 1])
      await eventually(`cluster ${i} rotated`, async () => (value(await readSecret(i)) === CANARY_V2 ? true : undefined));
    expect(responses.length - loads).toBeLessThan(10); // the rows came by the event stream, not by polling

    await page.getByRole('button', { name: 'Unpublish' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Unpublish' }).click();
    for (const c of clusters) await page.locator(`[data-cluster="${c}"][data-state="deprovisioned"]`).waitFor({ timeout: T });
    await page.getByTestId('fleet-placement').waitFor({ state: 'detached' }); // published nowhere now
    for (const i of [0, 1])
      await eventually(`cluster ${i} Secret deleted`, async () => ((await readSecret(i)) === undefined ? true : undefined));
  }, 180_000);

  it('clusters: the enrollment token is shown once with the helm command filled in; the audit log verifies', async () => {
    await page.getByRole('link', { name: 'Clusters' }).click();
    await page.locator(`tr[data-cluster="${clusters[0]}"]`).getByText('enrolled').waitFor();
    // Both agents hold their stream: the table says so.
    for (const c of clusters)
      await page.locator(`tr[data-cluster="${c}"]`).getByTestId('agent-connection').getByText('connected', { exact: true }).waitFor();
    await page.locator(`tr[data-cluster="${clusters[0]}"]`).getByRole('button', { name: 'Enrollment token' }).click();
    const command = page.getByTestId('helm-command');
    await command.getByText(/helm install sigil-agent/).waitFor();
    const text = (await command.textContent())!;
    expect(text).toContain(`--set cluster=${clusters[0]}`);
    expect(text).toContain(`controlPlane.address=localhost:`);
    expect(text).toMatch(/--from-literal=token='sge_[A-Za-z0-9_-]+'/);
    await shot('clusters-enroll');
    await page.getByRole('button', { name: 'Done' }).click();

    // Manage: the agent's used token and the one just issued; revoking the unused one.
    await page.locator(`tr[data-cluster="${clusters[0]}"]`).getByRole('button', { name: 'Manage' }).click();
    const manage = page.getByRole('dialog', { name: `Manage ${clusters[0]}` });
    const tokens = manage.getByTestId('enrollment-tokens');
    await tokens.locator('tr[data-token-state="unused"]').waitFor();
    expect(await tokens.locator('tr[data-token-state="used"]').count()).toBe(1);
    await tokens.locator('tr[data-token-state="unused"]').getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Revoke token' }).click();
    await tokens.locator('tr[data-token-state="unused"]').waitFor({ state: 'detached' });
    // Enrollment by the cluster's own service-account identity, set and removed.
    await manage.getByLabel('Issuer').fill('https://kubernetes.default.svc.cluster.local');
    await manage.getByLabel('JWKS URI (optional)').fill('https://api.example.com:6443/openid/v1/jwks');
    await manage.getByRole('button', { name: 'Set identity' }).click();
    await manage.getByText('may enroll with a token of service account').waitFor();
    await shot('cluster-manage');
    await manage.getByRole('button', { name: 'Remove identity' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Remove identity' }).click();
    await manage.getByText('None: the agent enrolls with a one-time enrollment token').waitFor();
    await page.getByRole('alertdialog').waitFor({ state: 'detached' });
    // Focus stays in the dialog (on the form), so Escape closes it.
    expect(await page.evaluate('document.activeElement?.id')).toBe('identity-issuer');
    await page.keyboard.press('Escape');
    await manage.waitFor({ state: 'detached' });

    // A cluster registered by mistake is deleted from its Manage dialog.
    const doomed = uniqueName('doomed').slice(0, 40);
    await page.getByRole('button', { name: 'Register cluster' }).click();
    await page.getByLabel('Name').fill(doomed);
    await page.getByRole('button', { name: 'Register', exact: true }).click();
    await page.locator(`tr[data-cluster="${doomed}"]`).getByRole('button', { name: 'Manage' }).click();
    await page.getByRole('button', { name: `Delete ${doomed}` }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete cluster' }).click();
    await page.locator(`tr[data-cluster="${doomed}"]`).waitFor({ state: 'detached' });
    expect((await cp.admin.get(`/clusters/${doomed}`)).status).toBe(404);

    await page.getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('cell', { name: 'secret.update' }).first().waitFor();
    await page.getByRole('button', { name: 'Verify the chain' }).click();
    await page.getByTestId('audit-verified').waitFor();
    await shot('audit');
  });

  it('a database connection’s admin password is replaced from the console, write-only', async () => {
    // Created through the API (no server behind it: replacing the password does not dial).
    const created = await cp.admin.post(`/projects/${project}/connections`, {
      name: 'orders-db',
      host: '127.0.0.1',
      port: 1,
      database: 'orders',
      username: 'orders_admin',
      adminPassword: 'first-password-0123456789',
      tlsMode: 'disable',
    });
    expect(created.status).toBe(201);
    await page.goto(`${cp.cp.url}/console/projects/${project}`);
    await page.getByRole('tab', { name: 'Database connections' }).click();
    await page.getByRole('button', { name: 'Change password' }).click();
    const dialog = page.getByRole('dialog', { name: 'Admin password of orders-db' });
    const field = dialog.getByLabel('New admin password');
    expect(await field.getAttribute('type')).toBe('password');
    await field.fill(CANARY_PASSWORD);
    await dialog.getByRole('button', { name: 'Replace password' }).click();
    await page.getByText('Admin password of orders-db replaced').waitFor();
    await dialog.waitFor({ state: 'detached' });
    const after = (await cp.admin.get(`/projects/${project}/connections/orders-db`)).body;
    expect(after.version).toBe(created.body.version + 1);
    expect(new Date(after.adminPasswordSetAt).getTime()).toBeGreaterThan(new Date(created.body.adminPasswordSetAt).getTime());
  });

  it('a generated secret: the HSM makes the values, the schedule is set, changed and stopped, and a rotation is asked for', async () => {
    const secrets = `/projects/${project}/apps/${app}/secrets`;
    await page.goto(`${cp.cp.url}/console/projects/${project}/apps/${app}`);
    await page.getByRole('button', { name: 'Add secret' }).click();
    const add = page.getByRole('dialog', { name: 'Add secret' });
    await add.getByLabel('Name', { exact: true }).fill('session-key');
    await add.getByLabel('Values come from').selectOption({ label: 'the HSM (generated, nobody sees them)' });
    await add.getByLabel('Keys to generate').fill('SESSION_KEY=hex:32');
    await add.getByLabel('Rotate every (days)').fill('30');
    await add.getByRole('button', { name: 'Create secret' }).click();
    const card = page.locator('.secret-card', { has: page.getByRole('heading', { name: /session-key/ }) });
    await card.getByText('generated by the HSM').waitFor({ timeout: T });
    await card.getByText(/next rotation/).waitFor();
    const created = (await cp.admin.get(`${secrets}/session-key`)).body;
    expect([created.rotateEveryDays, created.keys, created.currentVersion]).toEqual([30, ['SESSION_KEY'], 1]);

    await card.getByRole('button', { name: 'Schedule' }).click();
    const schedule = page.getByRole('dialog', { name: 'Rotation schedule of session-key' });
    expect(await schedule.getByLabel('Rotate every (days)').inputValue()).toBe('30');
    await schedule.getByLabel('Rotate every (days)').fill('0');
    await schedule.getByRole('button', { name: 'Save schedule' }).click();
    await schedule.getByText('Rotate every: a whole number of days from 1 to 3650').waitFor(); // the dialog stays open
    await schedule.getByLabel('Rotate every (days)').fill('7');
    await schedule.getByRole('button', { name: 'Save schedule' }).click();
    await page.getByText('session-key: new values every 7 days').waitFor();
    await schedule.waitFor({ state: 'detached' });
    expect((await cp.admin.get(`${secrets}/session-key`)).body.rotateEveryDays).toBe(7);

    await card.getByRole('button', { name: 'Schedule' }).click();
    await schedule.getByLabel('Rotate every (days)').fill('');
    await schedule.getByRole('button', { name: 'Stop rotating' }).click();
    await page.getByText('session-key: no automatic rotation').waitFor();
    await card.getByText(/next rotation/).waitFor({ state: 'detached' });
    const stopped = (await cp.admin.get(`${secrets}/session-key`)).body;
    expect([stopped.rotateEveryDays, stopped.nextRotationAt]).toEqual([null, null]);

    await card.getByRole('button', { name: 'Rotate' }).click();
    await page.getByRole('dialog', { name: 'Rotate session-key' }).getByRole('button', { name: 'Generate new values' }).click();
    await page.getByText('session-key: new values generated').waitFor();
    await card.getByText('v2', { exact: true }).waitFor();
    const rotated = (await cp.admin.get(`${secrets}/session-key`)).body;
    expect(rotated.currentVersion).toBe(2);
    expect(new Date(rotated.lastRotatedAt).getTime()).toBeGreaterThan(new Date(created.lastRotatedAt ?? created.createdAt).getTime());
  });

  it('the main screens pass axe-core (WCAG 2 A/AA): no serious or critical violation', async () => {
    // axe is injected by the test, so this context bypasses the console's CSP (script-src 'self').
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, bypassCSP: true });
    try {
      const p = await signIn(context, ADMIN_TOKEN);
      const screens: [string, string, string][] = [
        ['projects', '/console/', 'Projects'],
        ['project', `/console/projects/${project}`, project],
        ['app secrets', `/console/projects/${project}/apps/${app}`, app],
        ['fleet', `/console/projects/${project}/apps/${app}/fleet`, app],
        ['clusters', '/console/clusters', 'Clusters'],
        ['audit', '/console/audit', 'Audit log'],
        ['administration', '/console/admin', 'Administration'],
      ];
      const found: string[] = [];
      for (const [screen, url, heading] of screens) {
        await p.goto(`${cp.cp.url}${url}`);
        await p.getByRole('heading', { name: heading, exact: true }).first().waitFor({ timeout: T });
        await p.locator('.bp6-spinner').first().waitFor({ state: 'detached' });
        await p.addScriptTag({ path: path.join(REPO_ROOT, 'node_modules/axe-core/axe.min.js') });
        const violations = await p.evaluate(async () => {
          const axe = (
            globalThis as unknown as {
              axe: { run(o: object): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> };
            }
          ).axe;
          const r = await axe.run({ runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } });
          return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
        });
        for (const v of violations)
          if (v.impact === 'serious' || v.impact === 'critical') found.push(`${screen}: ${v.id} (${v.impact}) at ${v.targets.join(', ')}`);
      }
      expect(found).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  it('a viewer sees no mutation controls, and a forged change is refused with 403', async () => {
    const viewerToken = (await cp.admin.post('/tokens', { name: uniqueName('viewer'), role: 'viewer' })).body.token as string;
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    try {
      const viewer = await signIn(context, viewerToken);
      expect(await viewer.getByRole('button', { name: 'New project' }).count()).toBe(0);
      await viewer.goto(`${cp.cp.url}/console/projects/${project}/apps/${app}`);
      await viewer.getByRole('heading', { name: /checkout-db/ }).waitFor({ timeout: T });
      for (const name of ['Publish', 'Unpublish', 'Add secret', 'Rotate', 'Schedule', 'Delete'])
        expect(await viewer.getByRole('button', { name }).count()).toBe(0);
      await viewer.getByRole('tab', { name: 'Fleet' }).click();
      await viewer.getByTestId('fleet-summary').waitFor();
      // With the session's own CSRF token, from the console's origin: the role still decides.
      const forged = await viewer.evaluate(
        async (p) => {
          const s = (await (await fetch('/api/v1/console/session')).json()) as { csrfToken: string };
          const r = await fetch(`/api/v1/projects/${p.project}/apps/${p.app}/publish`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrfToken },
            body: JSON.stringify({ clusters: p.clusters }),
          });
          return { status: r.status, body: (await r.json()) as { code: string } };
        },
        { project, app, clusters },
      );
      expect(forged.status).toBe(403);
      expect(forged.body.code).toBe('forbidden');
      // Without the CSRF token even an admin's session could not; the viewer's is refused first.
      await viewer.getByRole('button', { name: 'Sign out' }).click();
      await viewer.getByLabel('API token').waitFor();
      expect((await context.cookies()).filter((c) => c.name.startsWith('__Host-sigil'))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('the values typed in are nowhere: not in the DOM, storage, responses, logs, PostgreSQL or Redis; no console errors', async () => {
    await page.goto(`${cp.cp.url}/console/projects/${project}/apps/${app}`);
    await page.getByRole('heading', { name: /checkout-db/ }).waitFor();
    const dom =
      (await page.content()) +
      (await page
        .locator('input, textarea')
        .evaluateAll((fields) => fields.map((f) => (f as unknown as { value: string }).value).join('\n'))) +
      (await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })));
    const places: Record<string, string> = {
      dom,
      responses: responses.join('\n'),
      'control-plane logs': cp.cp.logs(),
      'agent logs': agents.map((a) => a.logs()).join('\n'),
      'browser console': consoleMessages.join('\n'),
      postgresql: await databaseDump(cp.databaseUrl),
      redis: await redisDump(cp.redisPrefix),
    };
    expect(responses.length).toBeGreaterThan(20);
    for (const canary of [CANARY_V1, CANARY_V2, CANARY_PASSWORD])
      for (const spelling of spellings(canary))
        for (const [where, text] of Object.entries(places))
          expect({ where, found: text.includes(spelling) }).toEqual({ where, found: false });

    // The only console line allowed is the browser's own network note of the one expected
    // refusal: the viewer's forged publish above answering 403. (A first visit makes no
    // session probe, so no 401: the signed-in hint cookie is absent.)
    const expected = [/^error: Failed to load resource: the server responded with a status of 403 .*\/apps\/checkout\/publish$/];
    const errors = consoleMessages.filter((m) => !expected.some((e) => e.test(m)));
    expect(errors.filter((m) => /^(error|pageerror)/.test(m))).toEqual([]);
    expect(consoleMessages.join('\n')).not.toMatch(/Content Security Policy|Refused to/);
  });
});
