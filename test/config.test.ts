import assert from 'node:assert/strict';
import { buildConfig, configFileFlags, parseDuration } from '../src/config.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { hasCode } from '../src/errors.js';
import { effectiveKubeProxyConfig } from '../src/kube-proxy-config.js';
import { REPO } from './support/proxy.js';
import { aliasBomb, deepYaml } from './support/hostile-input.js';

const env = { NODE_NAME: 'node-a' } as NodeJS.ProcessEnv;
const invalid = (fn: () => unknown, flag: RegExp): void =>
  assert.throws(fn, (err: unknown) => hasCode(err, 'CONFIG_INVALID') && flag.test((err as Error).message));

describe('config', () => {
  it('has kube-proxy’s defaults', () => {
    const c = buildConfig([], env);
    assert.equal(c.hostnameOverride, 'node-a');
    assert.equal(c.proxyMode, 'nftables');
    assert.equal(c.nodePortAddresses, 'primary');
    assert.equal(c.syncPeriodMs, 30_000);
    assert.equal(c.minSyncPeriodMs, 1_000);
    assert.equal(c.healthzBindAddress, '0.0.0.0:10256');
    assert.equal(c.metricsBindAddress, '127.0.0.1:10249');
    assert.equal(c.lbAlgorithm, 'random');
    assert.equal(c.tableName, 'kube-nftproxy');
  });

  it('reads flags in both spellings, normalising CIDRs', () => {
    const c = buildConfig(
      [
        '--node-name=Node-B',
        '--cluster-cidr',
        '10.244.1.7/16, fd00::/56',
        '--masquerade-all',
        '--nodeport-addresses=192.168.0.0/24',
      ],
      env,
    );
    assert.equal(c.hostnameOverride, 'node-b');
    assert.deepEqual(c.clusterCIDRs, ['10.244.0.0/16', 'fd00::/56']);
    assert.equal(c.masqueradeAll, true);
    assert.deepEqual(c.nodePortAddresses, ['192.168.0.0/24']);
  });

  it('names the flag and the accepted values on bad input', () => {
    invalid(
      () => buildConfig(['--proxy-mode', 'ipvs'], env),
      /--proxy-mode: "ipvs" is not one of nftables, userspace/,
    );
    invalid(() => buildConfig(['--cluster-cidr', '10.0.0.0'], env), /--cluster-cidr: invalid CIDR/);
    invalid(() => buildConfig(['--node-ip', '1.2.3'], env), /--node-ip: invalid IP/);
    invalid(() => buildConfig(['--sync-period', '30'], env), /--sync-period: invalid duration/);
    invalid(
      () => buildConfig(['--min-sync-period', '1m', '--sync-period', '30s'], env),
      /--min-sync-period must not exceed/,
    );
    invalid(
      () => buildConfig(['--healthz-bind-address', 'localhost'], env),
      /--healthz-bind-address: expected HOST:PORT/,
    );
    invalid(() => buildConfig(['--bogus'], env), /unknown flag --bogus/);
    invalid(() => buildConfig(['--once=maybe'], env), /--once is a switch/);
    invalid(() => buildConfig(['--source'], env), /--source needs a value/);
  });

  it('parses Go durations', () => {
    assert.equal(parseDuration('1h30m', 'x'), 5_400_000);
    assert.equal(parseDuration('250ms', 'x'), 250);
    assert.equal(parseDuration('0s', 'x'), 0);
  });

  it('takes the KubeProxyConfiguration fields that apply, and flags win', () => {
    const file = [
      'apiVersion: kubeproxy.config.k8s.io/v1alpha1',
      'kind: KubeProxyConfiguration',
      'mode: nftables',
      'clusterCIDR: 10.244.0.0/16',
      'nodePortAddresses: [192.168.0.0/24]',
      'syncPeriod: 1m',
      'nftables:',
      '  masqueradeAll: true',
      '  minSyncPeriod: 2s',
      'iptables: { masqueradeAll: false }',
    ].join('\n');
    const flags = configFileFlags('kpc.yaml', () => file);
    assert.equal(flags.get('cluster-cidr'), '10.244.0.0/16');
    assert.equal(flags.get('nodeport-addresses'), '192.168.0.0/24');
    assert.equal(flags.get('sync-period'), '1m');
    assert.equal(flags.get('min-sync-period'), '2s');
    assert.equal(flags.get('masquerade-all'), 'true');
    const path = join(mkdtempSync(join(tmpdir(), 'knp-config-')), 'kpc.yaml');
    writeFileSync(path, file);
    const merged = buildConfig(['--config', path, '--sync-period', '10s'], env);
    assert.equal(merged.syncPeriodMs, 10_000, 'the flag wins');
    assert.equal(merged.minSyncPeriodMs, 2_000, 'nftables.minSyncPeriod from the file');
    assert.deepEqual(merged.clusterCIDRs, ['10.244.0.0/16']);
    assert.equal(merged.masqueradeAll, true);
    assert.throws(
      () => configFileFlags('x.yaml', () => 'kind: Pod'),
      (err: unknown) =>
        hasCode(err, 'CONFIG_INVALID') && /expected KubeProxyConfiguration/.test((err as Error).message),
    );
    assert.throws(
      () => configFileFlags('x.yaml', () => 'mode: kernelspace'),
      (err: unknown) => hasCode(err, 'CONFIG_INVALID') && /mode "kernelspace"/.test((err as Error).message),
    );
  });
});

describe('config: a drop-in for kube-proxy', () => {
  const KUBEADM = join(REPO, 'test/fixtures/kubeadm-kube-proxy-config.yaml');
  const env = { NODE_NAME: 'from-env' };

  it("takes kubeadm's generated KubeProxyConfiguration as it is: its nulls and 0s are kube-proxy's defaults", () => {
    const c = buildConfig([`--config=${KUBEADM}`, '--hostname-override=node-1'], env);
    assert.equal(c.syncPeriodMs, 30_000);
    assert.equal(c.minSyncPeriodMs, 1_000);
    assert.equal(c.proxyMode, 'nftables');
    assert.deepEqual(c.clusterCIDRs, ['10.244.0.0/16']);
    assert.equal(c.kubeconfig, '/var/lib/kube-proxy/kubeconfig.conf');
    assert.equal(c.hostnameOverride, 'node-1');
    assert.equal(c.healthzBindAddress, '0.0.0.0:10256');
    assert.equal(c.nodePortAddresses, 'primary');
    assert.deepEqual(c.nodeIPs, [], 'bindAddress 0.0.0.0 names no node IP');
    assert.equal(c.conntrack.maxPerCore, 32768, 'maxPerCore null: the default');
    assert.deepEqual(c.warnings, [], 'defaults are not worth a warning');
  });

  it("accepts a kube-proxy DaemonSet's arguments: those that apply act, each other one warns once", () => {
    const c = buildConfig(
      [
        `--config=${KUBEADM}`,
        '--hostname-override=node-1',
        '--v=4',
        '--bind-address=192.168.0.10',
        '--conntrack-max-per-core=0',
        '--oom-score-adj=-998',
        '--feature-gates',
        'NFTablesProxyMode=true',
        '--profiling',
        '--iptables-sync-period=10s',
      ],
      env,
    );
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.nodeIPs, ['192.168.0.10'], "--bind-address names the node's primary IP");
    assert.equal(c.conntrack.maxPerCore, 0);
    assert.equal(c.oomScoreAdj, -998);
    assert.equal(c.syncPeriodMs, 30_000, '--iptables-sync-period does not apply to nftables mode');
    assert.deepEqual(
      c.warnings.map((w) => /^flag --([a-z-]+)/.exec(w)?.[1]),
      ['feature-gates', 'profiling', 'iptables-sync-period'],
    );
  });

  it('names every field that is set and does not apply, and unknown ones; a mode of another proxy runs nftables', () => {
    const warnings: string[] = [];
    const flags = configFileFlags(
      'kpc.yaml',
      () =>
        [
          'kind: KubeProxyConfiguration',
          'mode: ipvs',
          'ipvs: { scheduler: rr, syncPeriod: 15s }',
          'iptables: { syncPeriod: 5s }',
          'featureGates: { SomeGate: true }',
          'nftables: { masqueradeBit: 15 }',
          'detectLocal: { bridgeInterface: cbr0 }',
          'clusterCIDRs: [10.0.0.0/8]',
        ].join('\n'),
      warnings,
    );
    assert.equal(flags.get('proxy-mode'), undefined);
    assert.equal(flags.get('sync-period'), '15s', "the ipvs section's period counts in ipvs mode");
    assert.deepEqual(warnings.map((w) => /(config field \S+|mode)/.exec(w)![1]).sort(), [
      'config field clusterCIDRs',
      'config field featureGates',
      'config field iptables.syncPeriod',
      'config field ipvs.scheduler',
      'config field mode',
      'config field nftables.masqueradeBit',
    ]);
  });

  it('writes the effective configuration as a KubeProxyConfiguration that reads back to the same settings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'knp-config-'));
    const out = join(dir, 'effective.yaml');
    const c = buildConfig(
      [`--config=${KUBEADM}`, '--hostname-override=node-1', '--masquerade-all', '--sync-period=1m30s'],
      env,
    );
    writeFileSync(out, stringify(effectiveKubeProxyConfig(c)));
    const again = buildConfig([`--config=${out}`], env);
    for (const k of [
      'hostnameOverride',
      'clusterCIDRs',
      'masqueradeAll',
      'syncPeriodMs',
      'minSyncPeriodMs',
    ] as const)
      assert.deepEqual(again[k], c[k], k);
    assert.deepEqual(again.warnings, []);
  });
});

describe('--config file that is not a configuration at all', () => {
  it('an alias bomb, a deep file, several documents or a scalar: CONFIG_INVALID naming the file', () => {
    for (const [text, reason] of [
      [aliasBomb(), /^--config x\.yaml: YAML aliases expand past 100 nodes/],
      [deepYaml(), /^--config x\.yaml: nested more than 100 levels deep/],
      ['kind: KubeProxyConfiguration\n---\nmode: nftables\n', /more than one YAML document/],
      ['hello\n', /not a KubeProxyConfiguration/],
    ] as const)
      invalid(() => configFileFlags('x.yaml', () => text), reason);
  });

  it('an empty file is an empty configuration', () => {
    assert.deepEqual(
      configFileFlags('x.yaml', () => ''),
      new Map(),
    );
  });
});
