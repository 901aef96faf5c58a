// One project: its apps, its database connections (dynamic secrets) and, for admins, where its
// apps may go (namespaces, the cluster selector).
import { Button, Card, FormGroup, H1, HTMLSelect, HTMLTable, InputGroup, Tab, Tabs, Tag, TextArea } from '@blueprintjs/core';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, call, type Schemas } from '../api/client';
import { usePaged } from '../api/paging';
import { useSession } from '../api/session';
import { Empty, Failed, Loading, notify } from '../ui/feedback';
import { ConfirmButton, FormDialog } from '../ui/forms';
import { ago } from '../ui/time';

export function ProjectPage() {
  const { project = '' } = useParams();
  const { can } = useSession();
  const [tab, setTab] = useState<string>('apps');
  const info = useQuery({
    queryKey: ['project', project],
    queryFn: () => call(api.GET('/api/v1/projects/{project}', { params: { path: { project } } })),
  });
  if (info.isPending) return <Loading what="the project" />;
  if (info.isError) return <Failed error={info.error} title={`Project ${project} could not be loaded`} />;
  return (
    <>
      <div className="page-header">
        <div>
          <H1>{info.data.name}</H1>
          {info.data.description && <p>{info.data.description}</p>}
        </div>
      </div>
      <Tabs id="project-tabs" selectedTabId={tab} onChange={(t) => setTab(String(t))} large renderActiveTabPanelOnly>
        <Tab id="apps" title="Apps" panel={<AppsPanel project={project} />} />
        <Tab id="connections" title="Database connections" panel={<ConnectionsPanel project={project} />} />
        {can('projects:write') && <Tab id="settings" title="Placement rules" panel={<PlacementPanel project={project} />} />}
      </Tabs>
    </>
  );
}

function AppsPanel({ project }: { project: string }) {
  const { can } = useSession();
  const [creating, setCreating] = useState(false);
  const apps = usePaged(['apps', project], (after) =>
    call(api.GET('/api/v1/projects/{project}/apps', { params: { path: { project }, query: { after, limit: '100' } } })),
  );
  return (
    <>
      <div className="toolbar">
        {can('apps:write') && <Button intent="primary" icon="add" text="New app" onClick={() => setCreating(true)} />}
      </div>
      {apps.isPending ? (
        <Loading what="apps" />
      ) : apps.isError ? (
        <Failed error={apps.error} />
      ) : apps.items.length === 0 ? (
        <Empty icon="application" title="No apps in this project">
          An app is one Kubernetes Secret (or injected files) in one namespace: its secrets go to the clusters it is published to.
        </Empty>
      ) : (
        <Card>
          <HTMLTable className="full-width" striped>
            <thead>
              <tr>
                <th scope="col">App</th>
                <th scope="col">Namespace</th>
                <th scope="col">Delivery</th>
                <th scope="col">Secret type</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {apps.items.map((a) => (
                <tr key={a.id}>
                  <td>
                    <Link to={`/projects/${project}/apps/${a.name}`}>{a.name}</Link>
                  </td>
                  <td className="mono">{a.namespace}</td>
                  <td>
                    <Tag minimal>{deliveryLabel(a)}</Tag>
                  </td>
                  <td className="mono">{a.secretType}</td>
                  <td>{ago(a.updatedAt)}</td>
                </tr>
              ))}
            </tbody>
          </HTMLTable>
          {apps.hasNextPage && <Button text="Show more" onClick={() => void apps.fetchNextPage()} />}
        </Card>
      )}
      <CreateAppDialog project={project} isOpen={creating} onClose={() => setCreating(false)} />
    </>
  );
}

export function deliveryLabel(a: Pick<Schemas['AppView'], 'deliveryMode' | 'mountPath'>): string {
  switch (a.deliveryMode) {
    case 'env':
      return 'environment variables';
    case 'volume':
      return `in-memory volume at ${a.mountPath}`;
    case 'inject':
      return 'injected (no Secret in etcd)';
  }
}

const SECRET_TYPES = [
  'Opaque',
  'kubernetes.io/tls',
  'kubernetes.io/dockerconfigjson',
  'kubernetes.io/basic-auth',
  'kubernetes.io/ssh-auth',
] as const;

function CreateAppDialog({ project, isOpen, onClose }: { project: string; isOpen: boolean; onClose: () => void }) {
  const [name, setName] = useState('');
  const [namespace, setNamespace] = useState('');
  const [deliveryMode, setMode] = useState<'env' | 'volume' | 'inject'>('env');
  const [mountPath, setMountPath] = useState('/etc/secrets');
  const [secretType, setType] = useState<(typeof SECRET_TYPES)[number]>('Opaque');
  const [consumers, setConsumers] = useState('');
  const queries = useQueryClient();
  const navigate = useNavigate();
  return (
    <FormDialog
      title="New app"
      icon="application"
      isOpen={isOpen}
      onClose={onClose}
      submitText="Create app"
      onSubmit={async () => {
        const body: Schemas['CreateAppDto'] = { name: name.trim(), namespace: namespace.trim(), deliveryMode, secretType };
        if (deliveryMode === 'volume') body.mountPath = mountPath.trim();
        if (deliveryMode === 'inject') body.consumers = parseConsumers(consumers);
        const app = await call(api.POST('/api/v1/projects/{project}/apps', { params: { path: { project } }, body }));
        await queries.invalidateQueries({ queryKey: ['apps', project] });
        notify(`App ${app.name} created`);
        void navigate(`/projects/${project}/apps/${app.name}`);
      }}
    >
      <FormGroup label="Name" labelFor="app-name" helperText="Also the name of the Kubernetes Secret in each cluster.">
        <InputGroup id="app-name" value={name} onValueChange={setName} autoFocus />
      </FormGroup>
      <FormGroup label="Namespace" labelFor="app-namespace" helperText="Where the Secret is written in every cluster.">
        <InputGroup id="app-namespace" value={namespace} onValueChange={setNamespace} />
      </FormGroup>
      <FormGroup label="Delivery" labelFor="app-mode">
        <HTMLSelect id="app-mode" value={deliveryMode} onChange={(e) => setMode(e.currentTarget.value as typeof deliveryMode)} fill>
          <option value="env">Environment variables (a Secret, referenced with envFrom)</option>
          <option value="volume">Files in an in-memory volume (a Secret, mounted)</option>
          <option value="inject">Injected into pods (no Secret in etcd)</option>
        </HTMLSelect>
      </FormGroup>
      {deliveryMode === 'volume' && (
        <FormGroup label="Mount path" labelFor="app-mount">
          <InputGroup id="app-mount" value={mountPath} onValueChange={setMountPath} />
        </FormGroup>
      )}
      {deliveryMode === 'inject' && (
        <FormGroup
          label="Consumers"
          labelFor="app-consumers"
          helperText="The pods that may receive the values, as namespace/service-account, one per line."
        >
          <TextArea id="app-consumers" value={consumers} onChange={(e) => setConsumers(e.currentTarget.value)} fill />
        </FormGroup>
      )}
      <FormGroup label="Secret type" labelFor="app-type">
        <HTMLSelect id="app-type" value={secretType} onChange={(e) => setType(e.currentTarget.value as typeof secretType)} fill>
          {SECRET_TYPES.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </HTMLSelect>
      </FormGroup>
    </FormDialog>
  );
}

function ConnectionsPanel({ project }: { project: string }) {
  const { can } = useSession();
  const [creating, setCreating] = useState(false);
  const [changingPassword, setChangingPassword] = useState<Schemas['ConnectionView'] | null>(null);
  const queries = useQueryClient();
  const list = usePaged(['connections', project], (after) =>
    call(api.GET('/api/v1/projects/{project}/connections', { params: { path: { project }, query: { after, limit: '100' } } })),
  );
  async function verify(c: Schemas['ConnectionView']) {
    try {
      const v = await call(
        api.POST('/api/v1/projects/{project}/connections/{connection}/verify', { params: { path: { project, connection: c.name } } }),
      );
      notify(
        v.superuser
          ? `${c.name}: PostgreSQL ${v.serverVersion}, but the admin is a superuser: Sigil refuses to issue with it`
          : v.canCreateRoles
            ? `${c.name}: PostgreSQL ${v.serverVersion}, the admin may create roles`
            : `${c.name}: PostgreSQL ${v.serverVersion}, but the admin may not create roles`,
        v.canCreateRoles ? 'success' : 'danger',
      );
    } catch (err) {
      notify(`${c.name}: ${(err as Error).message}`, 'danger');
    }
  }
  return (
    <>
      <div className="toolbar">
        {can('connections:write') && <Button intent="primary" icon="add" text="New connection" onClick={() => setCreating(true)} />}
      </div>
      {list.isPending ? (
        <Loading what="connections" />
      ) : list.isError ? (
        <Failed error={list.error} />
      ) : list.items.length === 0 ? (
        <Empty icon="database" title="No database connections">
          A connection lets Sigil create a short-lived PostgreSQL role for every cluster an app is published to (a dynamic secret), instead
          of one shared password.
        </Empty>
      ) : (
        <Card>
          <HTMLTable className="full-width" striped>
            <thead>
              <tr>
                <th scope="col">Connection</th>
                <th scope="col">Server</th>
                <th scope="col">Admin</th>
                <th scope="col">Role prefix</th>
                <th scope="col">TLS</th>
                <th scope="col">Password set</th>
                <th scope="col">
                  <span className="bp6-text-muted">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.items.map((c) => (
                <tr key={c.id}>
                  <td>{c.name}</td>
                  <td className="mono">
                    {c.host}:{c.port}/{c.database}
                  </td>
                  <td className="mono">{c.username}</td>
                  <td className="mono">{c.rolePrefix}</td>
                  <td>{c.tlsMode}</td>
                  <td>{ago(c.adminPasswordSetAt)}</td>
                  <td>
                    <Button variant="minimal" icon="pulse" text="Verify" onClick={() => void verify(c)} />
                    {can('connections:write') && (
                      <Button variant="minimal" icon="key" text="Change password" onClick={() => setChangingPassword(c)} />
                    )}
                    {can('connections:write') && (
                      <ConfirmButton
                        text="Delete"
                        icon="trash"
                        confirmText="Delete connection"
                        question={`Delete connection ${c.name}? Secrets that use it must be deleted first.`}
                        onConfirm={async () => {
                          await call(
                            api.DELETE('/api/v1/projects/{project}/connections/{connection}', {
                              params: { path: { project, connection: c.name } },
                            }),
                          );
                          await queries.invalidateQueries({ queryKey: ['connections', project] });
                        }}
                      />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </HTMLTable>
        </Card>
      )}
      <CreateConnectionDialog project={project} isOpen={creating} onClose={() => setCreating(false)} />
      {changingPassword && <PasswordDialog project={project} connection={changingPassword} onClose={() => setChangingPassword(null)} />}
    </>
  );
}

/** Replaces the admin role's password (after it was changed in PostgreSQL): write-only, like every value. */
function PasswordDialog({ project, connection, onClose }: { project: string; connection: Schemas['ConnectionView']; onClose: () => void }) {
  const [password, setPassword] = useState('');
  const queries = useQueryClient();
  return (
    <FormDialog
      title={`Admin password of ${connection.name}`}
      icon="key"
      isOpen
      onClose={() => {
        setPassword('');
        onClose();
      }}
      submitText="Replace password"
      onSubmit={async () => {
        try {
          await call(
            api.PATCH('/api/v1/projects/{project}/connections/{connection}', {
              params: { path: { project, connection: connection.name } },
              // Only over the settings this dialog was opened on (412 if someone changed them meanwhile).
              headers: { 'If-Match': `"${connection.version}"` },
              body: { adminPassword: password },
            }),
          );
        } finally {
          setPassword('');
        }
        await queries.invalidateQueries({ queryKey: ['connections', project] });
        notify(`Admin password of ${connection.name} replaced; Verify checks it`);
      }}
    >
      <p>
        Change the password of <code>{connection.username}</code> in PostgreSQL first, then give it here. Leases already issued keep
        working; new ones are issued with this password.
      </p>
      <FormGroup label="New admin password" labelFor="conn-new-password" helperText="Encrypted by the HSM on arrival; never shown again.">
        <InputGroup
          id="conn-new-password"
          type="password"
          autoComplete="new-password"
          value={password}
          onValueChange={setPassword}
          autoFocus
        />
      </FormGroup>
    </FormDialog>
  );
}

function CreateConnectionDialog({ project, isOpen, onClose }: { project: string; isOpen: boolean; onClose: () => void }) {
  const [f, setF] = useState({ name: '', host: '', port: '5432', database: '', username: '', tlsMode: 'verify-full', rolePrefix: '' });
  const [password, setPassword] = useState('');
  const queries = useQueryClient();
  const field = (k: keyof typeof f, label: string, help?: string) => (
    <FormGroup label={label} labelFor={`conn-${k}`} helperText={help}>
      <InputGroup id={`conn-${k}`} value={f[k]} onValueChange={(v) => setF({ ...f, [k]: v })} />
    </FormGroup>
  );
  return (
    <FormDialog
      title="New database connection"
      icon="database"
      isOpen={isOpen}
      onClose={() => {
        setPassword('');
        onClose();
      }}
      submitText="Create connection"
      onSubmit={async () => {
        try {
          await call(
            api.POST('/api/v1/projects/{project}/connections', {
              params: { path: { project } },
              body: {
                name: f.name.trim(),
                host: f.host.trim(),
                port: Number(f.port),
                database: f.database.trim(),
                username: f.username.trim(),
                adminPassword: password,
                tlsMode: f.tlsMode as 'disable' | 'require' | 'verify-full',
                rolePrefix: f.rolePrefix.trim() || undefined,
              },
            }),
          );
        } finally {
          setPassword('');
        }
        await queries.invalidateQueries({ queryKey: ['connections', project] });
        notify(`Connection ${f.name} created`);
      }}
    >
      {field('name', 'Name')}
      {field('host', 'Host')}
      {field('port', 'Port')}
      {field('database', 'Database')}
      {field('username', 'Admin role', 'A role with CREATEROLE, not a superuser.')}
      <FormGroup label="Admin password" labelFor="conn-password" helperText="Encrypted by the HSM on arrival; never shown again.">
        <InputGroup id="conn-password" type="password" autoComplete="new-password" value={password} onValueChange={setPassword} />
      </FormGroup>
      <FormGroup label="TLS" labelFor="conn-tls">
        <HTMLSelect id="conn-tls" value={f.tlsMode} onChange={(e) => setF({ ...f, tlsMode: e.currentTarget.value })} fill>
          <option value="verify-full">verify-full (recommended)</option>
          <option value="require">require (encrypted, server not verified)</option>
          <option value="disable">disable (plain text)</option>
        </HTMLSelect>
      </FormGroup>
      {field('rolePrefix', 'Role prefix (optional)', 'Roles Sigil creates start with it.')}
    </FormDialog>
  );
}

function PlacementPanel({ project }: { project: string }) {
  const queries = useQueryClient();
  const ns = useQuery({
    queryKey: ['namespaces', project],
    queryFn: () => call(api.GET('/api/v1/projects/{project}/namespaces', { params: { path: { project } } })),
  });
  const [namespaces, setNamespaces] = useState<string | null>(null);
  const [selector, setSelector] = useState('{}');
  const shown = namespaces ?? ns.data?.namespaces.join('\n') ?? '';
  return (
    <Card>
      <FormGroup
        label="Namespaces this project's apps may use"
        labelFor="project-namespaces"
        helperText="One per line; empty: any namespace."
      >
        <TextArea id="project-namespaces" value={shown} onChange={(e) => setNamespaces(e.currentTarget.value)} fill rows={4} />
      </FormGroup>
      <Button
        text="Save namespaces"
        onClick={() =>
          void call(
            api.PUT('/api/v1/projects/{project}/namespaces', {
              params: { path: { project } },
              body: { namespaces: shown.split(/\s+/).filter(Boolean) },
            }),
          )
            .then(() => queries.invalidateQueries({ queryKey: ['namespaces', project] }))
            .then(() => notify('Namespaces saved'))
            .catch((err: unknown) => notify((err as Error).message, 'danger'))
        }
      />
      <FormGroup
        label="Clusters this project may publish to"
        labelFor="project-selector"
        helperText='A Kubernetes label selector as JSON, e.g. {"matchLabels":{"tier":"store"}}; {} allows every cluster.'
        className="selector-group"
      >
        <TextArea
          id="project-selector"
          className="mono"
          value={selector}
          onChange={(e) => setSelector(e.currentTarget.value)}
          fill
          rows={3}
        />
      </FormGroup>
      <Button
        text="Save cluster selector"
        onClick={() => {
          let parsed: Record<string, unknown>;
          try {
            parsed = JSON.parse(selector) as Record<string, unknown>;
          } catch {
            notify('The selector is not valid JSON', 'danger');
            return;
          }
          void call(api.PUT('/api/v1/projects/{project}/cluster-selector', { params: { path: { project } }, body: { selector: parsed } }))
            .then(() => notify('Cluster selector saved'))
            .catch((err: unknown) => notify((err as Error).message, 'danger'));
        }}
      />
    </Card>
  );
}

/** Where and how an app is delivered; changing it re-delivers to every cluster it is published to. */
export function AppSettingsDialog({ project, app, onClose }: { project: string; app: Schemas['AppView']; onClose: () => void }) {
  const [namespace, setNamespace] = useState(app.namespace);
  const [deliveryMode, setMode] = useState(app.deliveryMode);
  const [mountPath, setMountPath] = useState(app.mountPath);
  const [secretType, setType] = useState(app.secretType as (typeof SECRET_TYPES)[number]);
  const [consumers, setConsumers] = useState(app.consumers.map((c) => `${c.namespace}/${c.serviceAccount}`).join('\n'));
  const queries = useQueryClient();
  return (
    <FormDialog
      title={`Settings of ${app.name}`}
      icon="cog"
      isOpen
      onClose={onClose}
      submitText="Save"
      onSubmit={async () => {
        const body: Schemas['UpdateAppDto'] = { namespace: namespace.trim(), deliveryMode, secretType };
        if (deliveryMode === 'volume') body.mountPath = mountPath.trim();
        if (deliveryMode === 'inject') body.consumers = parseConsumers(consumers);
        await call(api.PATCH('/api/v1/projects/{project}/apps/{app}', { params: { path: { project, app: app.name } }, body }));
        notify(`${app.name} saved; clusters receive the change`);
        await queries.invalidateQueries({ queryKey: ['app', project, app.name] });
      }}
    >
      <FormGroup label="Namespace" labelFor="settings-namespace">
        <InputGroup id="settings-namespace" value={namespace} onValueChange={setNamespace} />
      </FormGroup>
      <FormGroup label="Delivery" labelFor="settings-mode">
        <HTMLSelect id="settings-mode" value={deliveryMode} onChange={(e) => setMode(e.currentTarget.value as typeof deliveryMode)} fill>
          <option value="env">Environment variables</option>
          <option value="volume">Files in an in-memory volume</option>
          <option value="inject">Injected into pods (no Secret in etcd)</option>
        </HTMLSelect>
      </FormGroup>
      {deliveryMode === 'volume' && (
        <FormGroup label="Mount path" labelFor="settings-mount">
          <InputGroup id="settings-mount" value={mountPath} onValueChange={setMountPath} />
        </FormGroup>
      )}
      {deliveryMode === 'inject' && (
        <FormGroup label="Consumers" labelFor="settings-consumers" helperText="namespace/service-account, one per line.">
          <TextArea id="settings-consumers" value={consumers} onChange={(e) => setConsumers(e.currentTarget.value)} fill />
        </FormGroup>
      )}
      <FormGroup label="Secret type" labelFor="settings-type">
        <HTMLSelect id="settings-type" value={secretType} onChange={(e) => setType(e.currentTarget.value as typeof secretType)} fill>
          {SECRET_TYPES.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </HTMLSelect>
      </FormGroup>
    </FormDialog>
  );
}

function parseConsumers(text: string): Schemas['ConsumerDto'][] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((c) => {
      const [namespace = '', serviceAccount = ''] = c.split('/');
      return { namespace, serviceAccount };
    });
}
