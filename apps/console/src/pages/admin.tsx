// Administration (admins only): API tokens, and the HSM root key (rotate, watch the re-wrap,
// destroy retired versions).
import { Button, Callout, Card, FormGroup, H1, H3, HTMLSelect, HTMLTable, InputGroup, ProgressBar, Tag } from '@blueprintjs/core';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, call, type Schemas } from '../api/client';
import { useSession } from '../api/session';
import { Empty, Failed, Loading, notify } from '../ui/feedback';
import { ConfirmButton, FormDialog } from '../ui/forms';
import { ago, when } from '../ui/time';

export function AdminPage() {
  const { can } = useSession();
  if (!can('tokens:manage')) return <Empty icon="lock" title="Administration is for admins" />;
  return (
    <>
      <H1>Administration</H1>
      <TokensSection />
      {can('root-keys:manage') && <RootKeysSection />}
    </>
  );
}

function TokensSection() {
  const queries = useQueryClient();
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<Schemas['CreatedApiTokenView'] | null>(null);
  const tokens = useQuery({ queryKey: ['tokens'], queryFn: () => call(api.GET('/api/v1/tokens')) });
  return (
    <Card className="section">
      <div className="page-header">
        <H3>API tokens</H3>
        <Button intent="primary" icon="add" text="New token" onClick={() => setCreating(true)} />
      </div>
      {created && (
        <Callout intent="warning" icon="eye-off" title={`Token ${created.name}: copy it now, it is not shown again`}>
          <code data-testid="created-token">{created.token}</code>{' '}
          <Button variant="minimal" icon="cross" aria-label="Hide the token" onClick={() => setCreated(null)} />
        </Callout>
      )}
      {tokens.isPending ? (
        <Loading what="tokens" />
      ) : tokens.isError ? (
        <Failed error={tokens.error} />
      ) : (
        <HTMLTable className="full-width" striped compact>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Project</th>
              <th scope="col">Created</th>
              <th scope="col">State</th>
              <th scope="col">
                <span className="bp6-text-muted">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tokens.data.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>
                  <Tag minimal>{t.role}</Tag>
                </td>
                <td>{t.projectId ?? 'all projects'}</td>
                <td>{ago(t.createdAt)}</td>
                <td>{t.revokedAt ? <Tag intent="danger">revoked {ago(t.revokedAt)}</Tag> : <Tag intent="success">active</Tag>}</td>
                <td>
                  {!t.revokedAt && (
                    <ConfirmButton
                      text="Revoke"
                      icon="cross-circle"
                      confirmText="Revoke token"
                      question={`Revoke ${t.name}? Its console sessions end too.`}
                      onConfirm={async () => {
                        await call(api.DELETE('/api/v1/tokens/{id}', { params: { path: { id: t.id } } }));
                        await queries.invalidateQueries({ queryKey: ['tokens'] });
                      }}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </HTMLTable>
      )}
      {creating && <CreateTokenDialog onClose={() => setCreating(false)} onCreated={setCreated} />}
    </Card>
  );
}

function CreateTokenDialog({ onClose, onCreated }: { onClose: () => void; onCreated: (t: Schemas['CreatedApiTokenView']) => void }) {
  const [name, setName] = useState('');
  const [role, setRole] = useState<Schemas['CreateApiTokenDto']['role']>('viewer');
  const [project, setProject] = useState('');
  const queries = useQueryClient();
  return (
    <FormDialog
      title="New API token"
      icon="key"
      isOpen
      onClose={onClose}
      submitText="Create token"
      onSubmit={async () => {
        const t = await call(api.POST('/api/v1/tokens', { body: { name: name.trim(), role, project: project.trim() || undefined } }));
        onCreated(t);
        await queries.invalidateQueries({ queryKey: ['tokens'] });
      }}
    >
      <FormGroup label="Name" labelFor="token-name">
        <InputGroup id="token-name" value={name} onValueChange={setName} autoFocus />
      </FormGroup>
      <FormGroup
        label="Role"
        labelFor="token-role"
        helperText="viewer reads; pipeline publishes; operator also writes apps and secrets; admin does everything."
      >
        <HTMLSelect id="token-role" value={role} onChange={(e) => setRole(e.currentTarget.value as typeof role)} fill>
          <option>viewer</option>
          <option>pipeline</option>
          <option>operator</option>
          <option>admin</option>
        </HTMLSelect>
      </FormGroup>
      <FormGroup label="Project" labelFor="token-project" labelInfo="(optional)" helperText="Limit the token to one project.">
        <InputGroup id="token-project" value={project} onValueChange={setProject} />
      </FormGroup>
    </FormDialog>
  );
}

function RootKeysSection() {
  const queries = useQueryClient();
  const [rotation, setRotation] = useState<string | null>(null);
  const keys = useQuery({ queryKey: ['root-keys'], queryFn: () => call(api.GET('/api/v1/root-keys')) });
  const progress = useQuery({
    queryKey: ['root-key-rotation', rotation],
    queryFn: () => call(api.GET('/api/v1/root-keys/rotations/{rotation}', { params: { path: { rotation: rotation! } } })),
    enabled: rotation !== null,
    // A re-wrap runs in the background for a while; its progress is read every second until it ends.
    refetchInterval: (q) => (q.state.data && q.state.data.state !== 'running' ? false : 1000),
  });
  return (
    <Card className="section">
      <div className="page-header">
        <H3>HSM root key</H3>
        <ConfirmButton
          text="Rotate root key"
          icon="refresh"
          intent="warning"
          confirmText="Rotate"
          question="Create a new root key version in the HSM and re-wrap every data and delivery key under it in the background? Nothing is re-delivered to clusters."
          onConfirm={async () => {
            const r = await call(api.POST('/api/v1/root-keys/rotations'));
            setRotation(r.id);
            notify(`Root key v${r.toVersion} active; re-wrapping ${r.total} keys`);
            await queries.invalidateQueries({ queryKey: ['root-keys'] });
          }}
        />
      </div>
      {progress.data && (
        <div className="rotation-progress">
          Re-wrap {progress.data.state}: {progress.data.done} / {progress.data.total}
          <ProgressBar
            value={progress.data.total ? progress.data.done / progress.data.total : 1}
            animate={progress.data.state === 'running'}
          />
        </div>
      )}
      {keys.isPending ? (
        <Loading what="root keys" />
      ) : keys.isError ? (
        <Failed error={keys.error} />
      ) : (
        <HTMLTable className="full-width" striped compact>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">State</th>
              <th scope="col">Keys wrapped under it</th>
              <th scope="col">HSM attributes</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span className="bp6-text-muted">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {keys.data.items.map((k) => (
              <tr key={k.version}>
                <td>v{k.version}</td>
                <td>
                  <Tag intent={k.state === 'active' ? 'success' : 'none'}>{k.state}</Tag>
                </td>
                <td>{k.references}</td>
                <td>
                  {k.hsm
                    ? `${k.hsm.sensitive ? 'sensitive' : 'NOT sensitive'}, ${k.hsm.extractable ? 'EXTRACTABLE' : 'never extractable'}`
                    : '—'}
                </td>
                <td>{when(k.createdAt)}</td>
                <td>
                  {k.state === 'retired' && k.references === 0 && (
                    <ConfirmButton
                      text="Destroy"
                      icon="trash"
                      confirmText="Destroy in the HSM"
                      question={`Destroy root key v${k.version} in the HSM? Nothing is wrapped under it; this cannot be undone.`}
                      onConfirm={async () => {
                        await call(api.DELETE('/api/v1/root-keys/{version}', { params: { path: { version: String(k.version) } } }));
                        await queries.invalidateQueries({ queryKey: ['root-keys'] });
                      }}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </HTMLTable>
      )}
    </Card>
  );
}
