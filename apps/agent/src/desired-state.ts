import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { unary, type AgentServiceClient, type DesiredSecret, type GetDesiredStateResponse } from '@sigil/agent-protocol';

/** The complete desired state of one built generation, assembled from every page. */
export interface DesiredState {
  generation: bigint;
  secrets: DesiredSecret[];
  clusterKeyEnvelopes: Buffer[];
}

/** A listing that keeps being overtaken by new generations is given up (the next notification retries). */
const MAX_RESTARTS = 5;
const PAGE_DEADLINE_MS = 60_000;

/**
 * Lists the cluster's desired state page by page (GetDesiredState) and returns it only when the
 * last page has arrived: callers delete managed Secrets that are not in it, so a partial listing
 * must never reach them. Every page after the first names the generation of the first; when the
 * snapshot moves on meanwhile the control plane answers ABORTED and the listing starts over.
 */
export async function fetchDesiredState(client: AgentServiceClient, opts: { pageDeadlineMs?: number } = {}): Promise<DesiredState> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await listOnce(client, opts.pageDeadlineMs ?? PAGE_DEADLINE_MS);
    } catch (err) {
      if (!snapshotChanged(err) || attempt >= MAX_RESTARTS) throw err;
    }
  }
}

async function listOnce(client: AgentServiceClient, pageDeadlineMs: number): Promise<DesiredState> {
  const secrets: DesiredSecret[] = [];
  const keys = new Map<string, Buffer>();
  let generation = 0n;
  let pageToken = '';
  for (let page = 0; ; page++) {
    const res = await unary<GetDesiredStateResponse>((cb) =>
      client.getDesiredState({ generation, pageToken }, new Metadata(), { deadline: Date.now() + pageDeadlineMs }, cb),
    );
    if (page > 0 && res.generation !== generation) {
      throw new Error(`GetDesiredState page ${page} is of generation ${res.generation}, not ${generation}`);
    }
    generation = res.generation;
    secrets.push(...res.secrets);
    for (const k of res.clusterKeyEnvelopes) keys.set(Buffer.from(k).toString('base64'), Buffer.from(k));
    if (res.nextPageToken === '') return { generation, secrets, clusterKeyEnvelopes: [...keys.values()] };
    if (res.nextPageToken === pageToken) {
      throw new Error('GetDesiredState returned a page that does not advance the listing');
    }
    pageToken = res.nextPageToken;
  }
}

function snapshotChanged(err: unknown): boolean {
  const e = err as ServiceError;
  return e?.code === status.ABORTED && e.metadata?.get('sigil-error-code')[0] === 'snapshot_changed';
}
