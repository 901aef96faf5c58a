// The audit log: every change and every refused attempt, newest first, filtered at the server;
// admins verify the HMAC chain and see where it breaks, if it does.
import { Button, Callout, Card, FormGroup, H1, HTMLSelect, HTMLTable, InputGroup, Tag } from '@blueprintjs/core';
import { useInfiniteQuery } from '@tanstack/react-query';
import { useDeferredValue, useState } from 'react';
import { api, call, describeError, type Schemas } from '../api/client';
import { useSession } from '../api/session';
import { Empty, Failed, Loading } from '../ui/feedback';
import { when } from '../ui/time';

type Outcome = Schemas['AuditEventView']['outcome'];
const OUTCOME_INTENT = { attempted: 'none', success: 'success', denied: 'warning', failed: 'danger' } as const;

export function AuditPage() {
  const { can } = useSession();
  const [action, setAction] = useState('');
  const [outcome, setOutcome] = useState<Outcome | ''>('');
  const [project, setProject] = useState('');
  const filter = { action: useDeferredValue(action.trim()), outcome, project: useDeferredValue(project.trim()) };
  const [verification, setVerification] = useState<Schemas['AuditVerificationView'] | { error: unknown } | null>(null);
  const [verifying, setVerifying] = useState(false);
  const log = useInfiniteQuery({
    queryKey: ['audit', filter],
    queryFn: ({ pageParam }) =>
      call(
        api.GET('/api/v1/audit', {
          params: {
            query: {
              limit: '100',
              before: pageParam,
              action: filter.action || undefined,
              outcome: filter.outcome || undefined,
              project: filter.project || undefined,
            },
          },
        }),
      ),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next ?? undefined,
  });
  const items = log.data?.pages.flatMap((p) => p.items) ?? [];

  return (
    <>
      <div className="page-header">
        <H1>Audit log</H1>
        {can('audit:verify') && (
          <Button
            icon="endorsed"
            text="Verify the chain"
            loading={verifying}
            onClick={() => {
              setVerifying(true);
              call(api.GET('/api/v1/audit/verify'))
                .then(
                  (v) => setVerification(v),
                  (error: unknown) => setVerification({ error }),
                )
                .finally(() => setVerifying(false));
            }}
          />
        )}
      </div>
      {verification &&
        ('error' in verification ? (
          <Callout intent="danger" title="Verification could not run">
            {describeError(verification.error)}
          </Callout>
        ) : verification.ok ? (
          <Callout intent="success" icon="endorsed" title="The audit chain is intact" data-testid="audit-verified">
            {verification.checked} records checked; head #{verification.head.lastSeq}, hash{' '}
            <code>{verification.head.lastHash.slice(0, 16)}…</code>
            {verification.legacy > 0 && `; ${verification.legacy} older records use the legacy scheme`}.
          </Callout>
        ) : (
          <Callout intent="danger" icon="error" title="The audit chain is broken">
            At record {verification.brokenAt}: {verification.reason} ({verification.code}).
          </Callout>
        ))}
      <div className="toolbar" role="search">
        <FormGroup label="Action" labelFor="audit-action">
          <InputGroup id="audit-action" placeholder="e.g. secret.update" value={action} onValueChange={setAction} />
        </FormGroup>
        <FormGroup label="Outcome" labelFor="audit-outcome">
          <HTMLSelect id="audit-outcome" value={outcome} onChange={(e) => setOutcome(e.currentTarget.value as Outcome | '')}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="denied">denied</option>
            <option value="failed">failed</option>
            <option value="attempted">attempted</option>
          </HTMLSelect>
        </FormGroup>
        <FormGroup label="Project" labelFor="audit-project">
          <InputGroup id="audit-project" value={project} onValueChange={setProject} />
        </FormGroup>
      </div>
      {log.isPending ? (
        <Loading what="the audit log" />
      ) : log.isError ? (
        <Failed error={log.error} />
      ) : items.length === 0 ? (
        <Empty icon="history" title="No audit records match" />
      ) : (
        <Card>
          <HTMLTable className="full-width" striped compact>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Outcome</th>
                <th scope="col">Request</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.seq}>
                  <td className="mono">{e.seq}</td>
                  <td>{when(e.at)}</td>
                  <td>{e.actor ?? 'anonymous'}</td>
                  <td className="mono">{e.action}</td>
                  <td className="mono">{e.target ?? ''}</td>
                  <td>
                    <Tag intent={OUTCOME_INTENT[e.outcome]}>
                      {e.outcome}
                      {e.status ? ` ${e.status}` : ''}
                    </Tag>
                  </td>
                  <td className="mono">
                    {e.method} {e.path}
                  </td>
                </tr>
              ))}
            </tbody>
          </HTMLTable>
          {log.hasNextPage && <Button text="Show older" onClick={() => void log.fetchNextPage()} loading={log.isFetchingNextPage} />}
        </Card>
      )}
    </>
  );
}
