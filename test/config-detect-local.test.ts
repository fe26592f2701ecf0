import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { buildConfig } from '../src/config.js';
import { hasCode } from '../src/errors.js';
import { effectiveKubeProxyConfig } from '../src/kube-proxy-config.js';
import { interfaceNameProblem } from '../src/model/local-traffic.js';

const env = { NODE_NAME: 'node-a' } as NodeJS.ProcessEnv;
const invalid = (argv: string[], message: RegExp): void =>
  assert.throws(
    () => buildConfig(argv, env),
    (err: unknown) => hasCode(err, 'CONFIG_INVALID') && message.test((err as Error).message),
  );

describe('config: --detect-local-mode', () => {
  const modes: Array<[string, string[], object]> = [
    ['the default is ClusterCIDR, as kube-proxy’s', [], { mode: 'ClusterCIDR' }],
    [
      'ClusterCIDR',
      ['--detect-local-mode', 'ClusterCIDR', '--cluster-cidr', '10.0.0.0/8'],
      { mode: 'ClusterCIDR' },
    ],
    ['NodeCIDR', ['--detect-local-mode=NodeCIDR'], { mode: 'NodeCIDR' }],
    [
      'BridgeInterface with its bridge',
      ['--detect-local-mode', 'BridgeInterface', '--pod-bridge-interface', 'cbr0'],
      { mode: 'BridgeInterface', bridgeInterface: 'cbr0' },
    ],
    [
      'InterfaceNamePrefix with its prefix',
      ['--detect-local-mode', 'InterfaceNamePrefix', '--pod-interface-name-prefix', 'cali'],
      { mode: 'InterfaceNamePrefix', interfaceNamePrefix: 'cali' },
    ],
    [
      "another mode's parameter is ignored, as kube-proxy ignores it",
      ['--detect-local-mode', 'NodeCIDR', '--pod-bridge-interface', 'cbr0'],
      { mode: 'NodeCIDR' },
    ],
  ];
  for (const [name, argv, want] of modes)
    it(name, () => {
      const c = buildConfig(argv, env);
      assert.deepEqual(c.detectLocal, want);
      assert.deepEqual(
        c.warnings.filter((w) => /detect-local|pod-bridge|pod-interface/.test(w)),
        [],
        'no "not supported" warning any more',
      );
    });

  it('refuses an unknown mode, naming the accepted ones', () => {
    invalid(
      ['--detect-local-mode', 'PodCIDR'],
      /--detect-local-mode: "PodCIDR" is not one of ClusterCIDR, NodeCIDR/,
    );
  });

  it('refuses BridgeInterface without --pod-bridge-interface, and InterfaceNamePrefix without its prefix', () => {
    invalid(['--detect-local-mode', 'BridgeInterface'], /BridgeInterface needs --pod-bridge-interface/);
    invalid(
      ['--detect-local-mode', 'BridgeInterface', '--pod-bridge-interface', ' '],
      /needs --pod-bridge-interface/,
    );
    invalid(
      ['--detect-local-mode', 'InterfaceNamePrefix'],
      /InterfaceNamePrefix needs --pod-interface-name-prefix/,
    );
  });

  it('refuses interface names that could change an nft rule or are no Linux interface name', () => {
    for (const name of ['cbr0"', 'a b', 'veth*', 'br/0', 'eth0:1', 'x'.repeat(16), '..', 'br0;drop', "c'"])
      invalid(
        ['--detect-local-mode', 'BridgeInterface', '--pod-bridge-interface', name],
        /^--pod-bridge-interface: /,
      );
    invalid(
      ['--detect-local-mode', 'InterfaceNamePrefix', '--pod-interface-name-prefix', 'veth"*'],
      /^--pod-interface-name-prefix: /,
    );
    for (const name of [
      'cni0',
      'cbr0',
      'br-1a2b3c4d5e6f',
      'kube-bridge',
      'docker0',
      'eth0.100',
      'x'.repeat(15),
    ])
      assert.equal(interfaceNameProblem(name), undefined, name);
  });

  it('reads detectLocalMode and detectLocal from a KubeProxyConfiguration; flags win', () => {
    const dir = mkdtempSync(join(tmpdir(), 'knp-detect-'));
    try {
      const file = join(dir, 'kpc.yaml');
      writeFileSync(
        file,
        [
          'kind: KubeProxyConfiguration',
          'detectLocalMode: InterfaceNamePrefix',
          'detectLocal: { bridgeInterface: cbr0, interfaceNamePrefix: veth }',
        ].join('\n'),
      );
      assert.deepEqual(buildConfig([`--config=${file}`], env).detectLocal, {
        mode: 'InterfaceNamePrefix',
        interfaceNamePrefix: 'veth',
      });
      assert.deepEqual(
        buildConfig([`--config=${file}`, '--detect-local-mode=BridgeInterface'], env).detectLocal,
        {
          mode: 'BridgeInterface',
          bridgeInterface: 'cbr0',
        },
      );
      // kubeadm writes `detectLocalMode: ""`: kube-proxy's default.
      writeFileSync(file, ['kind: KubeProxyConfiguration', 'detectLocalMode: ""'].join('\n'));
      assert.deepEqual(buildConfig([`--config=${file}`], env).detectLocal, { mode: 'ClusterCIDR' });

      // --write-config-to says the mode and its interface, and reads back to the same.
      for (const argv of [
        ['--detect-local-mode', 'BridgeInterface', '--pod-bridge-interface', 'cni0'],
        ['--detect-local-mode', 'NodeCIDR'],
      ]) {
        const c = buildConfig(argv, env);
        writeFileSync(file, stringify(effectiveKubeProxyConfig(c)));
        assert.deepEqual(buildConfig([`--config=${file}`], env).detectLocal, c.detectLocal);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
