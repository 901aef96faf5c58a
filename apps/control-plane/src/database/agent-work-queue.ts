import { Inject, Injectable } from '@nestjs/common';
import { RuntimeConfig } from '../config/runtime-config.js';
import { WorkQueue } from './work-queue.js';

/** How long an enrollment or renewal may wait for its turn; well inside an agent's call deadline. */
const MAX_WAIT_MS = 5_000;

/**
 * The gate agents' database work (Enroll, RenewCertificate) queues at. A quarter of the pool
 * runs agent work at once: enough for the enrollment rate (each holds a connection for a few
 * milliseconds), and the rest of the pool stays free for the audit writer, delivery builds,
 * streams and the REST API, so an enrollment storm cannot starve them.
 */
@Injectable()
export class AgentWorkQueue extends WorkQueue {
  constructor(@Inject(RuntimeConfig) config: RuntimeConfig) {
    super({
      name: 'agent work',
      concurrency: Math.max(1, Math.floor(config.db.poolSize / 4)),
      maxWaiting: config.agentWork.queueDepth,
      maxWaitMs: MAX_WAIT_MS,
    });
  }
}
