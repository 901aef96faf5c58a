// The fleet view's data: one app's deliveries, paged and filtered at the server, kept current by
// the server-sent events of GET …/deliveries/events (fed by the control plane's cluster events,
// not polling). Events carry the changed clusters' rows; rows already loaded are replaced in place.
import { useInfiniteQuery, useQueryClient, type InfiniteData } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { api, call, type Schemas } from './client';

export type Delivery = Schemas['FleetDeliveryView'];
export type DeliveryPage = Schemas['DeliveryPage'];
export type Summary = Schemas['PublicationSummary'];
export type DeliveryState = Delivery['state'];

export interface FleetFilter {
  name: string;
  states: DeliveryState[];
  labels: string;
}

const PAGE = 200;

export function useDeliveries(project: string, app: string, filter: FleetFilter) {
  const queries = useQueryClient();
  const key = ['deliveries', project, app, filter] as const;
  const q = useInfiniteQuery({
    queryKey: key,
    queryFn: ({ pageParam }) =>
      call(
        api.GET('/api/v1/projects/{project}/apps/{app}/deliveries', {
          params: {
            path: { project, app },
            query: {
              limit: String(PAGE),
              after: pageParam,
              name: filter.name || undefined,
              state: filter.states.length ? filter.states.join(',') : undefined,
              labels: filter.labels || undefined,
            },
          },
        }),
      ),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next ?? undefined,
    // Live updates come from the event stream; a refetch would reset the scroll position.
    staleTime: Infinity,
  });
  const [live, setLive] = useState(false);

  useEffect(() => {
    const url = `/api/v1/projects/${encodeURIComponent(project)}/apps/${encodeURIComponent(app)}/deliveries/events`;
    const events = new EventSource(url);
    events.addEventListener('ready', () => {
      setLive(true);
      // Anything that changed before the stream was open is in a fresh first page.
      void queries.invalidateQueries({ queryKey: ['deliveries', project, app] });
    });
    events.addEventListener('deliveries', (e: MessageEvent<string>) => {
      const update = JSON.parse(e.data) as { items: Delivery[]; summary: Summary };
      const byName = new Map(update.items.map((d) => [d.cluster, d]));
      queries.setQueriesData<InfiniteData<DeliveryPage>>({ queryKey: ['deliveries', project, app] }, (data) =>
        data
          ? {
              ...data,
              pages: data.pages.map((p) => ({
                ...p,
                summary: update.summary,
                items: p.items.map((d) => byName.get(d.cluster) ?? d),
              })),
            }
          : data,
      );
      // A first rollout: clusters appear that no loaded page holds yet.
      const loaded = queries.getQueryData<InfiniteData<DeliveryPage>>(key);
      const shown = new Set(loaded?.pages.flatMap((p) => p.items.map((d) => d.cluster)) ?? []);
      const complete = loaded ? loaded.pages[loaded.pages.length - 1]?.next === null : false;
      if (complete && [...byName.keys()].some((c) => !shown.has(c)))
        void queries.invalidateQueries({ queryKey: ['deliveries', project, app] });
    });
    // Membership moved (a publish or unpublish, maybe from elsewhere): the rows and where it is published.
    events.addEventListener('reset', () => {
      void queries.invalidateQueries({ queryKey: ['deliveries', project, app] });
      void queries.invalidateQueries({ queryKey: ['placement', project, app] });
    });
    // EventSource reconnects by itself; until it does, say the view may be behind.
    events.onerror = () => setLive(false);
    return () => events.close();
    // eslint-disable-next-line react-hooks/exhaustive-deps -- `key` is rebuilt every render; the stream is per app
  }, [project, app, queries]);

  const pages = q.data?.pages ?? [];
  return {
    ...q,
    items: pages.flatMap((p) => p.items),
    summary: pages[0]?.summary,
    live,
  };
}
