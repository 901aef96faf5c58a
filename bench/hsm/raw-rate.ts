import { once } from 'node:events';
import { Worker as Thread } from 'node:worker_threads';
import { acquireLibrary, releaseLibrary } from '../../apps/control-plane/src/hsm/pkcs11-library.js';
import type { RawLoopInput } from './raw-loop.js';

/**
 * Runs the raw PKCS#11 loop (raw-loop.ts) on `threads` worker threads at once and returns the
 * operations per second they reached together.
 *
 * The calling thread holds the PKCS#11 library for the threads' whole life and finalises it
 * after the last one exited: each thread's pkcs11js object dlcloses the module when its thread
 * ends, and when the first thread to initialise it was also the last to hold it, SoftHSM was
 * unloaded under a thread still inside it (the fleet bench died with SIGSEGV that way).
 */
export async function rawRate(script: string | URL, input: RawLoopInput, threads: number): Promise<number> {
  acquireLibrary(input.module);
  try {
    const workers = Array.from({ length: threads }, () => new Thread(script, { workerData: input }));
    const exited = workers.map((w) => once(w, 'exit'));
    const counts = await Promise.all(workers.map(async (w) => (await once(w, 'message'))[0] as number));
    await Promise.all(exited); // each ends by itself once it posted its count, not terminated mid-call
    return counts.reduce((a, b) => a + b, 0) / (input.ms / 1000);
  } finally {
    releaseLibrary(input.module);
  }
}
