// One cluster's administration, opened from the clusters table: its enrollment tokens (never the
// token itself: metadata, and revoke for an unused one), enrollment by the cluster's own
// Kubernetes service-account identity instead of tokens, and deleting the cluster.
import { Button, Callout, Dialog, DialogBody, FormGroup, H4, HTMLTable, InputGroup, Tag } from '@blueprintjs/core';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { api, call, describeError, type Schemas } from '../api/client';
import { Failed, Loading, notify } from '../ui/feedback';
import { ConfirmButton } from '../ui/forms';
import { ago } from '../ui/time';

type Cluster = Schemas['ClusterView'];

export function ClusterManageDialog({ cluster, onClose, onDeleted }: { cluster: Cluster; onClose: () => void; onDeleted: () => void }) {
  return (
    <Dialog title={`Manage ${cluster.name}`} icon="cog" isOpen onClose={onClose} className="wide-dialog">
      <DialogBody>
        <EnrollmentTokens cluster={cluster} />
        <KubernetesIdentity cluster={cluster} />
        <section aria-labelledby="cluster-delete" className="section">
          <H4 id="cluster-delete">Delete the cluster</H4>
          <p>
            Its agent is disconnected at once and its certificate refused from then on; its delivery records and tokens go with it. Values
            injected into pods stop at once, but Kubernetes Secrets the agent wrote stay in the cluster: unpublish its apps first to have
            the agent remove them.
          </p>
          <ConfirmButton
            text={`Delete ${cluster.name}`}
            icon="trash"
            confirmText="Delete cluster"
            question={`Delete cluster ${cluster.name}? This cannot be undone: to deliver to it again, register it and enroll its agent anew.`}
            onConfirm={async () => {
              await call(api.DELETE('/api/v1/clusters/{cluster}', { params: { path: { cluster: cluster.name } } }));
              notify(`Cluster ${cluster.name} deleted`);
              onDeleted();
            }}
          />
        </section>
      </DialogBody>
    </Dialog>
  );
}

const tokenIntent = { unused: 'primary', used: 'success', expired: 'none' } as const;

function EnrollmentTokens({ cluster }: { cluster: Cluster }) {
  const queries = useQueryClient();
  const key = ['enrollment-tokens', cluster.name];
  const tokens = useQuery({
    queryKey: key,
    queryFn: () => call(api.GET('/api/v1/clusters/{cluster}/enrollment-tokens', { params: { path: { cluster: cluster.name } } })),
  });
  return (
    <section aria-labelledby="cluster-tokens" className="section">
      <H4 id="cluster-tokens">Enrollment tokens</H4>
      {tokens.isPending ? (
        <Loading what="enrollment tokens" />
      ) : tokens.isError ? (
        <Failed error={tokens.error} />
      ) : tokens.data.items.length === 0 ? (
        <p className="bp6-text-muted">None issued yet. “Enrollment token” in the clusters table issues one, with the install command.</p>
      ) : (
        <HTMLTable className="full-width" striped compact data-testid="enrollment-tokens">
          <thead>
            <tr>
              <th scope="col">Issued</th>
              <th scope="col">By</th>
              <th scope="col">State</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span className="bp6-text-muted">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tokens.data.items.map((t) => (
              <tr key={t.id} data-token-state={t.state}>
                <td>{ago(t.createdAt)}</td>
                <td>{t.createdBy}</td>
                <td>
                  <Tag intent={tokenIntent[t.state]} minimal>
                    {t.state === 'used' && t.usedAt ? `used ${ago(t.usedAt)}` : t.state}
                  </Tag>
                </td>
                <td>{new Date(t.expiresAt).toLocaleString()}</td>
                <td>
                  {t.state === 'unused' && (
                    <ConfirmButton
                      text="Revoke"
                      icon="disable"
                      confirmText="Revoke token"
                      question="Revoke this enrollment token? An agent that has not enrolled with it yet is refused; issue a new one for it."
                      onConfirm={async () => {
                        await call(
                          api.DELETE('/api/v1/clusters/{cluster}/enrollment-tokens/{id}', {
                            params: { path: { cluster: cluster.name, id: t.id } },
                          }),
                        );
                        notify('Enrollment token revoked');
                        await queries.invalidateQueries({ queryKey: key });
                      }}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </HTMLTable>
      )}
    </section>
  );
}

function KubernetesIdentity({ cluster }: { cluster: Cluster }) {
  const queries = useQueryClient();
  const current = cluster.kubernetesIdentity ?? null;
  const [issuer, setIssuer] = useState(current?.issuer ?? '');
  const [namespace, setNamespace] = useState(current?.serviceAccount.namespace ?? 'sigil-agent');
  const [name, setName] = useState(current?.serviceAccount.name ?? 'sigil-agent');
  const [jwksUri, setJwksUri] = useState(current?.jwksUri ?? '');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  // Removing the identity unmounts the button (and the confirmation) that held focus; give it to
  // the form instead of the page body, where Escape no longer reaches the dialog.
  const issuerInput = useRef<HTMLInputElement>(null);
  const hadIdentity = useRef(current !== null);
  useEffect(() => {
    if (hadIdentity.current && current === null) issuerInput.current?.focus();
    hadIdentity.current = current !== null;
  }, [current]);
  const path = { params: { path: { cluster: cluster.name } } };
  const done = async (message: string) => {
    notify(message);
    await queries.invalidateQueries({ queryKey: ['clusters'] });
  };
  const save = async () => {
    setBusy(true);
    setError(null);
    try {
      await call(
        api.PUT('/api/v1/clusters/{cluster}/kubernetes-identity', {
          ...path,
          body: {
            kubernetesIdentity: {
              issuer: issuer.trim(),
              serviceAccount: { namespace: namespace.trim(), name: name.trim() },
              ...(jwksUri.trim() ? { jwksUri: jwksUri.trim() } : {}),
            },
          },
        }),
      );
      await done(`${cluster.name} may now enroll with its service-account identity`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="cluster-identity" className="section">
      <H4 id="cluster-identity">Kubernetes identity</H4>
      <p>
        {current ? (
          <>
            The agent may enroll with a token of service account{' '}
            <code>
              {current.serviceAccount.namespace}/{current.serviceAccount.name}
            </code>{' '}
            issued by <code>{current.issuer}</code>: no enrollment token to hand over.
          </>
        ) : (
          'None: the agent enrolls with a one-time enrollment token. Set the issuer of the cluster’s service-account tokens to let the agent enroll with its own identity instead (the agent chart’s enrollment.mode=kubernetes).'
        )}
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
        noValidate
      >
        <FormGroup
          label="Issuer"
          labelFor="identity-issuer"
          helperText="The cluster’s --service-account-issuer, e.g. https://kubernetes.default.svc.cluster.local"
        >
          <InputGroup id="identity-issuer" inputRef={issuerInput} value={issuer} onValueChange={setIssuer} />
        </FormGroup>
        <div className="form-row">
          <FormGroup label="Service account namespace" labelFor="identity-namespace">
            <InputGroup id="identity-namespace" value={namespace} onValueChange={setNamespace} />
          </FormGroup>
          <FormGroup label="Service account name" labelFor="identity-name">
            <InputGroup id="identity-name" value={name} onValueChange={setName} />
          </FormGroup>
        </div>
        <FormGroup
          label="JWKS URI (optional)"
          labelFor="identity-jwks"
          helperText="https URL of the issuer’s keys, e.g. https://api.example.com:6443/openid/v1/jwks; without it, OIDC discovery on the issuer."
        >
          <InputGroup id="identity-jwks" value={jwksUri} onValueChange={setJwksUri} />
        </FormGroup>
        {error !== null && (
          <Callout intent="danger" role="alert">
            {describeError(error)}
          </Callout>
        )}
        <div className="button-row">
          <Button type="submit" intent="primary" text={current ? 'Save identity' : 'Set identity'} loading={busy} />
          {current && (
            <ConfirmButton
              text="Remove identity"
              icon="remove"
              intent="warning"
              confirmText="Remove identity"
              question="Stop accepting service-account enrollment for this cluster? An enrolled agent keeps working; enrolling again then needs a token."
              onConfirm={async () => {
                await call(api.DELETE('/api/v1/clusters/{cluster}/kubernetes-identity', path));
                await done(`${cluster.name} enrolls with tokens only`);
              }}
            />
          )}
        </div>
      </form>
    </section>
  );
}
