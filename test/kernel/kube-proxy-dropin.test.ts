import { join } from 'node:path';
import { LAB } from '../../scripts/lab/index.js';
import { service, slice } from '../support/objects.js';
import { REPO } from '../support/proxy.js';
import { caseTable, type Case, tracedLab } from '../support/traced-probe.js';

/**
 * The real CLI started as an existing kube-proxy DaemonSet starts kube-proxy: kubeadm's
 * generated ConfigMap (every field present, nulls and 0s) and the arguments such DaemonSets
 * carry, including flags that do not apply here. Real packets, held to trace(): the pod
 * network comes from the file's clusterCIDR, the NodePort address from --bind-address.
 */
describe('kernel: started with kubeadm’s kube-proxy config and a kube-proxy DaemonSet’s arguments', function () {
  this.timeout(180_000);
  const flags = [
    `--config=${join(REPO, 'test/fixtures/kubeadm-kube-proxy-config.yaml')}`,
    `--hostname-override=${LAB.nodeName}`,
    '--v=2',
    `--bind-address=${LAB.nodeIp}`,
    '--feature-gates=NFTablesProxyMode=true',
    '--profiling',
    '--oom-score-adj=-998',
    '--conntrack-max-per-core=0',
  ];
  const objects = [
    service('demo', 'web', {
      type: 'NodePort',
      clusterIP: '10.96.7.10',
      ports: [{ port: 80, targetPort: 8080, nodePort: 30780 }],
    }),
    slice(
      'demo',
      'web-a',
      'web',
      [{ port: 8080 }],
      [
        { ip: '10.244.1.71', nodeName: LAB.nodeName },
        { ip: '10.244.2.71', nodeName: LAB.remoteNodeName },
      ],
    ),
  ];
  const traced = tracedLab(async (lab) => {
    await lab.addPod('web-1', { ip: '10.244.1.71' });
    await lab.addPod('far-1', { ip: '10.244.2.71', local: false });
    for (const pod of ['web-1', 'far-1']) await lab.serve(pod, { tcp: [8080] });
    await lab.addPod('pod', { ip: '10.244.1.50' });
    await lab.addClient('outside', '172.30.0.150');
  });
  const both = ['far-1', 'web-1'];
  caseTable(
    'drop-in',
    traced,
    [
      {
        from: 'pod',
        dst: '10.96.7.10',
        port: 80,
        proto: 'tcp',
        expect: { answer: both, sees: 'client' },
        note: "a pod: inside the file's clusterCIDR, not masqueraded",
      },
      {
        from: 'outside',
        dst: LAB.nodeIp,
        port: 30780,
        proto: 'tcp',
        expect: { answer: both, sees: 'node' },
        note: 'the NodePort on the --bind-address IP',
      },
      {
        from: 'node',
        dst: '10.96.7.10',
        port: 80,
        proto: 'tcp',
        expect: { answer: both, sees: 'node' },
        note: 'the node is outside the clusterCIDR: masqueraded',
      },
    ] satisfies Case[],
    () => traced().sync(objects, flags),
  );
});
