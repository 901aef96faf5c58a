// The rest of an app's page: the pod-spec snippet to copy, which pods consumed injected secrets,
// and the per-cluster database credentials (leases) of dynamic secrets.
import { Button, Callout, Card, FormGroup, HTMLTable, InputGroup, Pre, Tag } from '@blueprintjs/core';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useDeferredValue, useState } from 'react';
import { api, call } from '../api/client';
import { usePaged } from '../api/paging';
import { useSession } from '../api/session';
import { Empty, Failed, Loading, notify } from '../ui/feedback';
import { ConfirmButton } from '../ui/forms';
import { ago, when } from '../ui/time';

export function PodSpecPanel({ project, app }: { project: string; app: string }) {
  const [container, setContainer] = useState('app');
  const name = useDeferredValue(container.trim() || 'app');
  const spec = useQuery({
    queryKey: ['pod-spec', project, app, name],
    queryFn: () =>
      call(api.GET('/api/v1/projects/{project}/apps/{app}/pod-spec', { params: { path: { project, app }, query: { container: name } } })),
  });
  const text = spec.data
    ? JSON.stringify(
        spec.data.annotations ? { metadata: { annotations: spec.data.annotations }, spec: spec.data.podSpec } : { spec: spec.data.podSpec },
        null,
        2,
      )
    : '';
  return (
    <Card>
      <FormGroup label="Container name" labelFor="pod-spec-container" inline>
        <InputGroup id="pod-spec-container" value={container} onValueChange={setContainer} />
      </FormGroup>
      {spec.isPending ? (
        <Loading what="the snippet" />
      ) : spec.isError ? (
        <Failed error={spec.error} />
      ) : (
        <>
          <p>Merge this into your Deployment&apos;s pod template so the container receives the app&apos;s secrets:</p>
          {spec.data.note && <Callout icon="info-sign">{spec.data.note}</Callout>}
          <Pre className="snippet" data-testid="pod-spec">
            {text}
          </Pre>
          <Button
            icon="clipboard"
            text="Copy"
            onClick={() =>
              void navigator.clipboard.writeText(text).then(
                () => notify('Copied'),
                () => notify('The browser refused the clipboard; select the text and copy it', 'danger'),
              )
            }
          />
        </>
      )}
    </Card>
  );
}

export function ConsumptionPanel({ project, app }: { project: string; app: string }) {
  const list = usePaged(['consumption', project, app], (after) =>
    call(
      api.GET('/api/v1/projects/{project}/apps/{app}/consumption', { params: { path: { project, app }, query: { after, limit: '200' } } }),
    ),
  );
  if (list.isPending) return <Loading what="consumption" />;
  if (list.isError) return <Failed error={list.error} />;
  if (list.items.length === 0)
    return (
      <Empty icon="people" title="No pod has received these secrets yet">
        Pods of the app&apos;s consumers (namespace and service account) appear here once the agent has injected values into them.
      </Empty>
    );
  return (
    <Card>
      <HTMLTable className="full-width" striped compact>
        <thead>
          <tr>
            <th scope="col">Cluster</th>
            <th scope="col">Secret</th>
            <th scope="col">Version</th>
            <th scope="col">Consumer</th>
            <th scope="col">Last pod</th>
            <th scope="col">Grants</th>
            <th scope="col">Last</th>
          </tr>
        </thead>
        <tbody>
          {list.items.map((c) => (
            <tr key={`${c.cluster}/${c.secret}/${c.namespace}/${c.serviceAccount}`}>
              <td>{c.cluster}</td>
              <td>{c.secret}</td>
              <td>v{c.version}</td>
              <td className="mono">
                {c.namespace}/{c.serviceAccount}
              </td>
              <td className="mono">{c.lastPod}</td>
              <td>{c.grants}</td>
              <td>{ago(c.lastAt)}</td>
            </tr>
          ))}
        </tbody>
      </HTMLTable>
      {list.hasNextPage && <Button text="Show more" onClick={() => void list.fetchNextPage()} />}
    </Card>
  );
}

const LEASE_INTENT = {
  intent: 'none',
  active: 'success',
  superseded: 'warning',
  revoking: 'warning',
  revoked: 'none',
  failed: 'danger',
} as const;

export function LeasesPanel({ project, app }: { project: string; app: string }) {
  const { can } = useSession();
  const queries = useQueryClient();
  const list = usePaged(['leases', project, app], (after) =>
    call(api.GET('/api/v1/projects/{project}/apps/{app}/leases', { params: { path: { project, app }, query: { after, limit: '200' } } })),
  );
  if (list.isPending) return <Loading what="leases" />;
  if (list.isError) return <Failed error={list.error} />;
  if (list.items.length === 0)
    return (
      <Empty icon="time" title="No leases">
        A dynamic secret gives every cluster its own short-lived database role; each one is a lease, listed here with when it expires.
      </Empty>
    );
  return (
    <Card>
      <HTMLTable className="full-width" striped compact>
        <thead>
          <tr>
            <th scope="col">Cluster</th>
            <th scope="col">Secret</th>
            <th scope="col">Role</th>
            <th scope="col">State</th>
            <th scope="col">Expires</th>
            <th scope="col">Last error</th>
            <th scope="col">
              <span className="bp6-text-muted">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {list.items.map((l) => (
            <tr key={l.id}>
              <td>{l.cluster ?? '—'}</td>
              <td>{l.secret ?? '—'}</td>
              <td className="mono">
                {l.role} (#{l.serial})
              </td>
              <td>
                <Tag intent={LEASE_INTENT[l.state]}>{l.state}</Tag>{' '}
                {l.revokeReason && <span className="bp6-text-muted">{l.revokeReason}</span>}
              </td>
              <td>{when(l.expiresAt)}</td>
              <td>{l.lastError ?? ''}</td>
              <td>
                {can('secrets:write') && l.state === 'active' && (
                  <ConfirmButton
                    text="Revoke"
                    icon="cross-circle"
                    confirmText="Revoke"
                    question={`Revoke ${l.role}? The cluster gets a fresh credential; the old role is dropped after its grace period.`}
                    onConfirm={async () => {
                      await call(
                        api.POST('/api/v1/projects/{project}/apps/{app}/leases/{lease}/revoke', {
                          params: { path: { project, app, lease: l.id } },
                        }),
                      );
                      notify(`${l.role} revoked`);
                      await queries.invalidateQueries({ queryKey: ['leases', project, app] });
                    }}
                  />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </HTMLTable>
      {list.hasNextPage && <Button text="Show more" onClick={() => void list.fetchNextPage()} />}
    </Card>
  );
}
