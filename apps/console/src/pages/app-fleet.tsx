// The fleet view: every cluster the app is published to, its state, what it applied and when
// its agent was last seen. Paged and filtered at the server, virtualised here (10,000 rows
// scroll like 10), live while a rollout runs.
import { Button, Callout, Checkbox, ControlGroup, FormGroup, InputGroup, Spinner, Tag, Tooltip, type Intent } from '@blueprintjs/core';
import { useVirtualizer } from '@tanstack/react-virtual';
import { useQuery } from '@tanstack/react-query';
import { useDeferredValue, useEffect, useRef, useState } from 'react';
import { api, call } from '../api/client';
import { useDeliveries, type Delivery, type DeliveryState, type FleetFilter } from '../api/deliveries';
import { Empty, Failed, Loading } from '../ui/feedback';
import { placementParts } from '../ui/placement-text';
import { ago } from '../ui/time';

const STATES: DeliveryState[] = ['pending', 'provisioned', 'failed', 'deprovisioning', 'deprovisioned'];
const INTENT: Record<DeliveryState, Intent> = {
  pending: 'warning',
  provisioned: 'success',
  failed: 'danger',
  deprovisioning: 'warning',
  deprovisioned: 'none',
};
const ROW = 48;

export function FleetPanel({ project, app }: { project: string; app: string }) {
  const [name, setName] = useState('');
  const [labels, setLabels] = useState('');
  const [states, setStates] = useState<DeliveryState[]>([]);
  // Typing does not refetch on every key.
  const filter: FleetFilter = { name: useDeferredValue(name.trim()), labels: useDeferredValue(labels.trim()), states };
  const fleet = useDeliveries(project, app, filter);
  const scroller = useRef<HTMLDivElement>(null);
  const { items, hasNextPage, isFetchingNextPage, fetchNextPage } = fleet;
  // TanStack Virtual returns fresh functions each render, which the React Compiler cannot memoise;
  // this component is not compiled, so the rule's warning does not apply.
  // eslint-disable-next-line react-hooks/incompatible-library
  const rows = useVirtualizer({
    count: hasNextPage ? items.length + 1 : items.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW,
    overscan: 12,
  });
  const virtual = rows.getVirtualItems();
  const last = virtual[virtual.length - 1];
  useEffect(() => {
    if (last && last.index >= items.length - 1 && hasNextPage && !isFetchingNextPage) void fetchNextPage();
  }, [last, items.length, hasNextPage, isFetchingNextPage, fetchNextPage]);

  const s = fleet.summary;
  return (
    <>
      <div className="toolbar" role="search" aria-label="Filter clusters">
        <FormGroup label="Cluster name" labelFor="fleet-name">
          <InputGroup id="fleet-name" leftIcon="search" placeholder="contains…" value={name} onValueChange={setName} />
        </FormGroup>
        <FormGroup label="Labels" labelFor="fleet-labels">
          <InputGroup id="fleet-labels" placeholder="region=eu-west,tier=store" value={labels} onValueChange={setLabels} />
        </FormGroup>
        <FormGroup label="State">
          <ControlGroup>
            {STATES.map((st) => (
              <Checkbox
                key={st}
                inline
                label={st}
                checked={states.includes(st)}
                onChange={() => setStates(states.includes(st) ? states.filter((x) => x !== st) : [...states, st])}
              />
            ))}
          </ControlGroup>
        </FormGroup>
        <Tooltip content={fleet.live ? 'Updates arrive as agents report' : 'Reconnecting to live updates…'}>
          <Tag intent={fleet.live ? 'success' : 'warning'} icon={fleet.live ? 'feed' : 'offline'} data-testid="fleet-live">
            {fleet.live ? 'live' : 'offline'}
          </Tag>
        </Tooltip>
      </div>
      <PublishedTo project={project} app={app} />
      {s && (
        <div className="fleet-summary" aria-live="polite" data-testid="fleet-summary">
          <Tag large>{s.clusters} clusters</Tag>
          {STATES.map((st) => (
            <Tag key={st} large minimal intent={INTENT[st]}>
              {s[st]} {st}
            </Tag>
          ))}
          <Tag large intent={s.converged ? 'success' : 'warning'} icon={s.converged ? 'tick' : 'time'}>
            {s.converged ? 'converged' : 'rolling out'}
          </Tag>
        </div>
      )}
      {fleet.isPending ? (
        <Loading what="the fleet" />
      ) : fleet.isError ? (
        <Failed error={fleet.error} title="The fleet could not be loaded" />
      ) : items.length === 0 ? (
        filter.name || filter.labels || states.length ? (
          <Empty icon="filter-remove" title="No cluster matches these filters" />
        ) : (
          <Empty icon="send-to-graph" title="Not published anywhere yet">
            Publish the app to clusters by name or by labels; each cluster then shows up here with its state as its agent reports.
          </Empty>
        )
      ) : (
        <div
          className="fleet-list"
          ref={scroller}
          role="table"
          aria-label="Clusters of this app"
          aria-rowcount={(s?.clusters ?? items.length) + 1}
        >
          <div className="fleet-row header" role="row" style={{ height: ROW }}>
            <span role="columnheader">Cluster</span>
            <span role="columnheader">State</span>
            <span role="columnheader">Generation</span>
            <span role="columnheader">Secrets (version, applied)</span>
            <span role="columnheader">Agent last seen</span>
          </div>
          <div style={{ height: rows.getTotalSize(), position: 'relative' }}>
            {virtual.map((v) => {
              const d = items[v.index];
              return (
                <div
                  key={v.key}
                  className="fleet-row"
                  role="row"
                  aria-rowindex={v.index + 2}
                  data-cluster={d?.cluster}
                  data-state={d?.state}
                  style={{ position: 'absolute', top: 0, left: 0, right: 0, height: ROW, transform: `translateY(${v.start}px)` }}
                >
                  {d ? <FleetRow d={d} /> : <Spinner size={16} aria-label="Loading more clusters" />}
                </div>
              );
            })}
          </div>
        </div>
      )}
      {fleet.isFetching && !fleet.isPending && <span className="bp6-text-muted">Refreshing…</span>}
      {!fleet.live && !fleet.isPending && (
        <Callout intent="warning" icon="offline" className="hint">
          Live updates are reconnecting; the list may be behind until they are back.
        </Callout>
      )}
      <Button variant="minimal" icon="refresh" text="Reload list" onClick={() => void fleet.refetch()} />
    </>
  );
}

/** What the app was published to (names, selectors) and unpublished from, above the per-cluster rows. */
function PublishedTo({ project, app }: { project: string; app: string }) {
  const placement = useQuery({
    queryKey: ['placement', project, app],
    queryFn: () => call(api.GET('/api/v1/projects/{project}/apps/{app}/placement', { params: { path: { project, app } } })),
  });
  const parts = placement.data && placementParts(placement.data);
  if (!parts) return null;
  return (
    <p className="fleet-placement" data-testid="fleet-placement">
      <strong>Published to</strong> {parts.targets.join(' · ')}
      {parts.except && (
        <>
          {' '}
          · <strong>except</strong> {parts.except}
        </>
      )}
    </p>
  );
}

function FleetRow({ d }: { d: Delivery }) {
  return (
    <>
      <span role="cell">
        <strong>{d.cluster}</strong>
        <span className="label-tags">
          {Object.entries(d.labels).map(([k, v]) => (
            <Tag key={k} minimal>
              {k}={v}
            </Tag>
          ))}
        </span>
      </span>
      <span role="cell">
        <Tag intent={INTENT[d.state]} className="state-tag">
          {d.state}
        </Tag>
        {d.reason && (
          <Tooltip content={d.reason}>
            <span className="bp6-text-muted"> {d.reason.slice(0, 40)}</span>
          </Tooltip>
        )}
      </span>
      <span role="cell" className="mono">
        {d.appliedGeneration}/{d.desiredGeneration}
      </span>
      <span role="cell" className="label-tags">
        {d.secrets.map((x) => (
          <Tag key={x.name} minimal intent={x.applied ? 'success' : 'warning'} icon={x.applied ? 'tick' : 'time'}>
            {x.name} v{x.version}
          </Tag>
        ))}
      </span>
      <span role="cell">{ago(d.lastSeenAt)}</span>
    </>
  );
}
