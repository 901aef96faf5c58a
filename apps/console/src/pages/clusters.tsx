// The clusters Sigil delivers to: register with labels, relabel, disable/enable, issue a one-time
// enrollment token (shown once, with the helm command for the agent chart), and what each agent
// last reported; "Manage" (cluster-manage.tsx) has its tokens, Kubernetes identity and delete.
import { Button, Callout, Card, FormGroup, H1, HTMLTable, InputGroup, Pre, Tag, TextArea } from '@blueprintjs/core';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useDeferredValue, useState } from 'react';
import { api, call, type Schemas } from '../api/client';
import { usePaged } from '../api/paging';
import { useSession } from '../api/session';
import { Empty, Failed, Loading, notify } from '../ui/feedback';
import { ConfirmButton, FormDialog } from '../ui/forms';
import { ago } from '../ui/time';
import { keyValueText as labelText, parseKeyValues as parseLabels } from '../ui/key-values';
import { ClusterManageDialog } from './cluster-manage';

type Cluster = Schemas['ClusterView'];

export function ClustersPage() {
  const { can } = useSession();
  const [filter, setFilter] = useState('');
  const labels = useDeferredValue(filter.trim());
  const [registering, setRegistering] = useState(false);
  const [relabeling, setRelabeling] = useState<Cluster | null>(null);
  const [token, setToken] = useState<Schemas['EnrollmentTokenView'] | null>(null);
  // By name, so the dialog shows the row as refetched after a change.
  const [managing, setManaging] = useState<string | null>(null);
  const queries = useQueryClient();
  const clusters = usePaged(['clusters', labels], (after) =>
    call(api.GET('/api/v1/clusters', { params: { query: { after, limit: '200', labels: labels || undefined } } })),
  );
  const refresh = () => queries.invalidateQueries({ queryKey: ['clusters'] });
  const path = (c: Cluster) => ({ params: { path: { cluster: c.name } } });

  return (
    <>
      <div className="page-header">
        <H1>Clusters</H1>
        {can('clusters:write') && <Button intent="primary" icon="add" text="Register cluster" onClick={() => setRegistering(true)} />}
      </div>
      <div className="toolbar" role="search">
        <FormGroup label="Labels" labelFor="clusters-labels">
          <InputGroup
            id="clusters-labels"
            leftIcon="filter"
            placeholder="region=eu-west,tier=store"
            value={filter}
            onValueChange={setFilter}
          />
        </FormGroup>
      </div>
      {clusters.isPending ? (
        <Loading what="clusters" />
      ) : clusters.isError ? (
        <Failed error={clusters.error} />
      ) : clusters.items.length === 0 ? (
        labels ? (
          <Empty icon="filter-remove" title="No cluster has these labels" />
        ) : (
          <Empty icon="cloud" title="No clusters yet">
            Register a cluster, then install the agent in it with the enrollment token the console gives you. Apps published to the cluster
            appear there as Kubernetes Secrets.
          </Empty>
        )
      ) : (
        <Card>
          <HTMLTable className="full-width" striped>
            <thead>
              <tr>
                <th scope="col">Cluster</th>
                <th scope="col">Labels</th>
                <th scope="col">State</th>
                <th scope="col">Agent</th>
                <th scope="col">Connection</th>
                <th scope="col">Last seen</th>
                <th scope="col">Generation</th>
                {can('clusters:write') && (
                  <th scope="col">
                    <span className="bp6-text-muted">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {clusters.items.map((c) => (
                <tr key={c.id} data-cluster={c.name}>
                  <td>
                    <strong>{c.name}</strong>
                  </td>
                  <td className="label-tags">
                    {Object.entries(c.labels).map(([k, v]) => (
                      <Tag key={k} minimal>
                        {k}={String(v)}
                      </Tag>
                    ))}
                  </td>
                  <td>
                    <Tag intent={c.state === 'enrolled' ? 'success' : c.state === 'disabled' ? 'danger' : 'none'}>{c.state}</Tag>
                  </td>
                  <td>{c.agentVersion ?? '—'}</td>
                  <td data-testid="agent-connection">
                    <Connection cluster={c} />
                  </td>
                  <td>{ago(c.lastSeenAt)}</td>
                  <td className="mono">
                    {c.appliedGeneration}/{c.desiredGeneration}
                  </td>
                  {can('clusters:write') && (
                    <td>
                      <Button
                        variant="minimal"
                        icon="key"
                        text="Enrollment token"
                        onClick={() =>
                          void call(api.POST('/api/v1/clusters/{cluster}/enrollment-tokens', { ...path(c), body: {} })).then(
                            setToken,
                            (err: unknown) => notify((err as Error).message, 'danger'),
                          )
                        }
                      />
                      <Button variant="minimal" icon="tag" text="Labels" onClick={() => setRelabeling(c)} />
                      <Button variant="minimal" icon="cog" text="Manage" onClick={() => setManaging(c.name)} />
                      {c.state === 'disabled' ? (
                        <Button
                          variant="minimal"
                          icon="play"
                          text="Enable"
                          onClick={() => void call(api.POST('/api/v1/clusters/{cluster}/enable', path(c))).then(refresh)}
                        />
                      ) : (
                        <ConfirmButton
                          text="Disable"
                          icon="disable"
                          intent="warning"
                          confirmText="Disable cluster"
                          question={`Disable ${c.name}? Its agent is disconnected at once and receives nothing until the cluster is enabled again.`}
                          onConfirm={async () => {
                            await call(api.POST('/api/v1/clusters/{cluster}/disable', path(c)));
                            await refresh();
                          }}
                        />
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </HTMLTable>
          {clusters.hasNextPage && <Button text="Show more" onClick={() => void clusters.fetchNextPage()} />}
        </Card>
      )}
      {registering && <RegisterDialog onClose={() => setRegistering(false)} onDone={refresh} />}
      {relabeling && <RelabelDialog cluster={relabeling} onClose={() => setRelabeling(null)} onDone={refresh} />}
      {token && <TokenDialog token={token} onClose={() => setToken(null)} />}
      {managing && clusters.items.some((c) => c.name === managing) && (
        <ClusterManageDialog
          cluster={clusters.items.find((c) => c.name === managing)!}
          onClose={() => setManaging(null)}
          onDeleted={() => {
            setManaging(null);
            void refresh();
          }}
        />
      )}
    </>
  );
}

/** Whether the agent holds a stream to the control plane now (the server's `agentConnected`). */
function Connection({ cluster }: { cluster: Cluster }) {
  if (cluster.agentConnected === null) return <span className="bp6-text-muted">unknown</span>;
  if (cluster.agentConnected)
    return (
      <Tag intent="success" minimal icon="link">
        connected
      </Tag>
    );
  return cluster.state === 'registered' ? (
    <span className="bp6-text-muted">never enrolled</span>
  ) : (
    <Tag minimal icon="disable">
      not connected
    </Tag>
  );
}

function RegisterDialog({ onClose, onDone }: { onClose: () => void; onDone: () => Promise<void> }) {
  const [name, setName] = useState('');
  const [labels, setLabels] = useState('');
  return (
    <FormDialog
      title="Register cluster"
      icon="cloud"
      isOpen
      onClose={onClose}
      submitText="Register"
      onSubmit={async () => {
        await call(api.POST('/api/v1/clusters', { body: { name: name.trim(), labels: parseLabels(labels) } }));
        notify(`Cluster ${name.trim()} registered; issue an enrollment token to install its agent`);
        await onDone();
      }}
    >
      <FormGroup label="Name" labelFor="cluster-name" helperText="A DNS label, unique, e.g. eu-west-store-0042.">
        <InputGroup id="cluster-name" value={name} onValueChange={setName} autoFocus />
      </FormGroup>
      <FormGroup label="Labels" labelFor="cluster-labels" helperText="key=value, one per line; apps published by label selector reach it.">
        <TextArea id="cluster-labels" value={labels} onChange={(e) => setLabels(e.currentTarget.value)} fill rows={3} />
      </FormGroup>
    </FormDialog>
  );
}

function RelabelDialog({ cluster, onClose, onDone }: { cluster: Cluster; onClose: () => void; onDone: () => Promise<void> }) {
  const [labels, setLabels] = useState(labelText(cluster.labels));
  return (
    <FormDialog
      title={`Labels of ${cluster.name}`}
      icon="tag"
      isOpen
      onClose={onClose}
      submitText="Save labels"
      onSubmit={async () => {
        await call(
          api.PATCH('/api/v1/clusters/{cluster}', { params: { path: { cluster: cluster.name } }, body: { labels: parseLabels(labels) } }),
        );
        notify(`Labels of ${cluster.name} saved; apps published by selector follow`);
        await onDone();
      }}
    >
      <FormGroup label="Labels" labelFor="relabel-labels" helperText="key=value, one per line. This replaces all labels.">
        <TextArea id="relabel-labels" value={labels} onChange={(e) => setLabels(e.currentTarget.value)} fill rows={5} autoFocus />
      </FormGroup>
    </FormDialog>
  );
}

function TokenDialog({ token, onClose }: { token: Schemas['EnrollmentTokenView']; onClose: () => void }) {
  const trust = useQuery({ queryKey: ['agent-trust'], queryFn: () => call(api.GET('/api/v1/agents/trust')) });
  const command = trust.data
    ? [
        `cat > sigil-ca.pem <<'EOF'`,
        trust.data.caCertificatePem.trim(),
        'EOF',
        'kubectl create namespace sigil-agent',
        `kubectl -n sigil-agent create secret generic sigil-enrollment-token --from-literal=token='${token.token}'`,
        `helm install sigil-agent charts/sigil-agent -n sigil-agent \\`,
        `  --set cluster=${token.cluster} --set controlPlane.address=${trust.data.grpcAddress} \\`,
        `  --set-file controlPlane.caBundle=sigil-ca.pem --set enrollment.mode=token --set 'namespaces={default}'`,
      ].join('\n')
    : '';
  return (
    <FormDialog
      title={`Install the agent in ${token.cluster}`}
      icon="key"
      isOpen
      onClose={onClose}
      submitText="Done"
      wide
      onSubmit={() => Promise.resolve()}
    >
      <Callout intent="warning" icon="eye-off">
        This token is shown only once and works once, until {new Date(token.expiresAt).toLocaleString()}. Run the commands against the
        cluster now, or issue a new token later.
      </Callout>
      {trust.isError ? (
        <Failed error={trust.error} />
      ) : (
        <>
          <p>
            Set <code>namespaces</code> to where the agent may write Secrets. CA fingerprint (SHA-256): <code>{trust.data?.sha256}</code>
          </p>
          <Pre className="snippet" data-testid="helm-command">
            {command}
          </Pre>
          <Button
            icon="clipboard"
            text="Copy commands"
            onClick={() =>
              void navigator.clipboard.writeText(command).then(
                () => notify('Copied'),
                () => notify('Select the text and copy it', 'danger'),
              )
            }
          />
        </>
      )}
    </FormDialog>
  );
}
