import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { HsmRequest, HsmResponse, HsmTask, HsmTaskResults, HsmWorkerConfig } from './hsm-tasks.js';

/** Most values merged into one seal message (see coalesce). */
const COALESCE_MAX = 64;

export class HsmError extends Error {
  constructor(
    message: string,
    readonly ckr?: string,
  ) {
    super(message);
    this.name = 'HsmError';
  }
}

interface Slot {
  worker: Worker;
  busy: boolean;
  pending?: { id: number; resolve: (v: unknown) => void; reject: (e: Error) => void };
}

interface Queued {
  req: HsmRequest;
  transfer: ArrayBuffer[];
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/**
 * A fixed set of HSM worker threads, each with its own PKCS#11 session. Tasks queue until a
 * worker is free; a worker that dies is replaced and its task fails (callers retry by design:
 * every HSM operation Sigil performs is idempotent or re-runnable).
 */
export class HsmWorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Queued[] = [];
  private nextId = 1;
  private closing = false;

  constructor(
    private readonly config: HsmWorkerConfig,
    readonly size: number,
  ) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /** `transfer`: buffers handed over to the worker (detached here), e.g. plaintext copies. */
  run<K extends HsmTask['op']>(task: Extract<HsmTask, { op: K }>, transfer: ArrayBuffer[] = []): Promise<HsmTaskResults[K]> {
    if (this.closing) return Promise.reject(new HsmError('HSM is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ req: { id: this.nextId++, task }, transfer, resolve: resolve as (v: unknown) => void, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const slot of this.slots) {
      slot.pending?.reject(new HsmError('HSM is shutting down'));
      slot.pending = undefined;
    }
    for (const q of this.queue.splice(0)) {
      for (const b of q.transfer) new Uint8Array(b).fill(0);
      q.reject(new HsmError('HSM is shutting down'));
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.busy) continue;
      const first = this.queue.shift();
      if (!first) return;
      const next = this.coalesce(first);
      slot.busy = true;
      slot.pending = { id: next.req.id, resolve: next.resolve, reject: next.reject };
      slot.worker.ref(); // a task in flight keeps the process alive; idle workers do not
      slot.worker.postMessage(next.req, next.transfer);
    }
  }

  /**
   * Under load, seal requests queue up behind busy workers; sending them as one message
   * amortises the thread round trip (~80 µs) over many values. Results are split back out.
   */
  private coalesce(first: Queued): Queued {
    const task = first.req.task;
    if (task.op !== 'seal') return first;
    const group: Array<{ q: Queued; n: number }> = [{ q: first, n: task.items.length }];
    let total = task.items.length;
    for (let i = 0; i < this.queue.length && total < COALESCE_MAX;) {
      const t = this.queue[i]!.req.task;
      if (t.op === 'seal' && t.rootKeyVersion === task.rootKeyVersion && total + t.items.length <= COALESCE_MAX) {
        group.push({ q: this.queue.splice(i, 1)[0]!, n: t.items.length });
        total += t.items.length;
      } else i++;
    }
    if (group.length === 1) return first;
    const items = group.flatMap(({ q }) => (q.req.task as Extract<HsmTask, { op: 'seal' }>).items);
    return {
      req: { id: this.nextId++, task: { op: 'seal', rootKeyVersion: task.rootKeyVersion, items } },
      transfer: group.flatMap(({ q }) => q.transfer),
      resolve: (result) => {
        let offset = 0;
        for (const { q, n } of group) {
          q.resolve((result as unknown[]).slice(offset, offset + n));
          offset += n;
        }
      },
      reject: (err) => group.forEach(({ q }) => q.reject(err)),
    };
  }

  private spawn(): Slot {
    const worker = new Worker(workerScript(), { workerData: this.config, name: 'sigil-hsm' });
    const slot: Slot = { worker, busy: false };
    worker.on('message', (res: HsmResponse) => {
      const pending = slot.pending;
      slot.pending = undefined;
      slot.busy = false;
      worker.unref();
      if (pending?.id === res.id) {
        if (res.ok) pending.resolve(toBuffers(res.result));
        else pending.reject(new HsmError(res.error.message, res.error.ckr));
      }
      this.dispatch();
    });
    const replace = (err: Error) => {
      slot.pending?.reject(new HsmError(`HSM worker failed: ${err.message}`));
      slot.pending = undefined;
      if (this.closing) return;
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots[index] = this.spawn();
      this.dispatch();
    };
    worker.on('error', replace);
    worker.on('exit', (code) => {
      if (!this.closing) replace(new Error(`exited with code ${code}`));
    });
    worker.unref();
    return slot;
  }
}

/**
 * The compiled worker script. Run from dist/ it sits beside this file; under Jest (TypeScript
 * sources) the tree has been compiled to dist/ by the global setup, so use that copy.
 */
function workerScript(): URL {
  const beside = new URL('./hsm-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  const path = fileURLToPath(beside).replace(
    /\/apps\/control-plane\/src\/hsm\/hsm-worker\.js$/,
    '/dist/apps/control-plane/src/hsm/hsm-worker.js',
  );
  if (!existsSync(path)) throw new Error(`HSM worker script not found (${path}); build first`);
  return new URL(`file://${path}`);
}

/** Structured clone turns Buffers into plain Uint8Arrays; give callers Buffers back (no copy). */
function toBuffers(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(toBuffers);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toBuffers(v)]));
  }
  return value;
}
