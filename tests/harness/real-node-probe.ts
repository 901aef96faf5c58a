// A real node with one running pod, left to be killed: tests/e2e/real-node.e2e-spec.ts SIGKILLs
// this process and checks that the node's watcher leaves the machine as it found it.
// Prints `ready <node dir>` once the pod runs.
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { busyboxPod, NodeCluster, podReady } from './real-node-charts.js';
import { IMAGE_ARCHIVES, RealNode } from './real-node.js';

const node = await RealNode.start();
await node.importImages([path.join(IMAGE_ARCHIVES, 'sigil-busybox.tar')]);
const cluster = await NodeCluster.connect(node);
await cluster.core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'probe' }, stringData: { V: 'x' } } });
const pod = busyboxPod(
  'probe',
  'exec sleep 3600',
  { volumes: [{ name: 's', secret: { secretName: 'probe' } }] },
  { volumeMounts: [{ name: 's', mountPath: '/s' }] },
);
for (;;) {
  try {
    await cluster.core.createNamespacedPod({ namespace: 'default', body: pod });
    break;
  } catch {
    await sleep(200); // the default service account appears shortly after the controller-manager starts
  }
}
while (!podReady(await cluster.core.readNamespacedPod({ namespace: 'default', name: 'probe' }))) await sleep(200);
process.stdout.write(`ready ${node.info.dir}\n`);
await new Promise(() => undefined);
