import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildConfig } from '../src/config.js';
import type { ConntrackConfig } from '../src/config-types.js';
import {
  CONNTRACK_MAX_LIMIT,
  conntrackMax,
  desiredSysctls,
  onlineCpus,
  setConntrackSysctls,
} from '../src/conntrack-sysctls.js';
import { createLogger } from '../src/log.js';

const DEFAULTS: ConntrackConfig = buildConfig([], {}).conntrack;
const NF = 'proc/sys/net/netfilter';
const HASHSIZE = 'sys/module/nf_conntrack/parameters/hashsize';

describe('conntrack sysctls: what to set (pure)', () => {
  it("has kube-proxy's defaults", () => {
    assert.deepEqual(DEFAULTS, {
      maxPerCore: 32768,
      min: 131072,
      tcpEstablishedTimeoutMs: 86_400_000,
      tcpCloseWaitTimeoutMs: 3_600_000,
      tcpBeLiberal: false,
      udpTimeoutMs: 0,
      udpStreamTimeoutMs: 0,
    });
  });

  for (const [maxPerCore, min, cpus, want] of [
    [32768, 131072, 2, 131072],
    [32768, 131072, 8, 262144],
    [32768, 0, 1, 32768],
    [0, 131072, 64, 0],
    [65536, 131072, 64, CONNTRACK_MAX_LIMIT],
    [1, 2_000_000, 4, 2_000_000],
  ] as const) {
    it(`nf_conntrack_max: ${maxPerCore}/core × ${cpus} CPUs, min ${min} → ${want}`, () => {
      assert.equal(conntrackMax({ maxPerCore, min }, cpus), want);
    });
  }

  it('defaults on 2 CPUs: max and hashsize raised only, the two TCP timeouts set when they differ', () => {
    assert.deepEqual(desiredSysctls(DEFAULTS, 2), [
      { path: `${NF}/nf_conntrack_max`, value: 131072, when: 'raise' },
      { path: HASHSIZE, value: 32768, when: 'raise' },
      { path: `${NF}/nf_conntrack_tcp_timeout_established`, value: 86400, when: 'differs' },
      { path: `${NF}/nf_conntrack_tcp_timeout_close_wait`, value: 3600, when: 'differs' },
    ]);
  });

  it('0 leaves a value alone; be-liberal and the UDP timeouts are set only when asked', () => {
    const c = buildConfig([
      '--conntrack-max-per-core=0',
      '--conntrack-tcp-timeout-established=0',
      '--conntrack-tcp-timeout-close-wait',
      '0s',
      '--conntrack-tcp-be-liberal',
      '--conntrack-udp-timeout=45s',
      '--conntrack-udp-timeout-stream=3m',
    ]).conntrack;
    assert.deepEqual(desiredSysctls(c, 4), [
      { path: `${NF}/nf_conntrack_tcp_be_liberal`, value: 1, when: 'differs' },
      { path: `${NF}/nf_conntrack_udp_timeout`, value: 45, when: 'differs' },
      { path: `${NF}/nf_conntrack_udp_timeout_stream`, value: 180, when: 'differs' },
    ]);
  });
});

describe('conntrack sysctls on a fake /proc and /sys tree', () => {
  let root: string;
  let logs: Array<Record<string, unknown>>;
  const log = () =>
    createLogger({ level: 'debug', destination: { write: (l: string) => void logs.push(JSON.parse(l)) } });

  const put = async (path: string, value: string): Promise<void> => {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), value);
  };
  const value = async (path: string): Promise<string> => (await readFile(join(root, path), 'utf8')).trim();

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'knp-sysctl-'));
    logs = [];
    await put('sys/devices/system/cpu/online', '0-3\n');
    await put(`${NF}/nf_conntrack_max`, '65536\n');
    await put(HASHSIZE, '16384\n');
    await put(`${NF}/nf_conntrack_tcp_timeout_established`, '432000\n');
    await put(`${NF}/nf_conntrack_tcp_timeout_close_wait`, '60\n');
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("counts the node's online CPUs from sysfs", async () => {
    assert.equal(await onlineCpus(root), 4);
    await put('sys/devices/system/cpu/online', '0-3,5,7-8\n');
    assert.equal(await onlineCpus(root), 7);
  });

  it('writes what differs (4 CPUs: max 131072, hashsize 32768, 24h, 1h), then nothing on a second run', async () => {
    const first = await setConntrackSysctls(DEFAULTS, { log: log(), root });
    assert.deepEqual(
      first.map((o) => [o.path, o.was, o.value, o.result]),
      [
        [`/${NF}/nf_conntrack_max`, 65536, 131072, 'written'],
        [`/${HASHSIZE}`, 16384, 32768, 'written'],
        [`/${NF}/nf_conntrack_tcp_timeout_established`, 432000, 86400, 'written'],
        [`/${NF}/nf_conntrack_tcp_timeout_close_wait`, 60, 3600, 'written'],
      ],
    );
    assert.equal(await value(`${NF}/nf_conntrack_max`), '131072');
    assert.equal(await value(HASHSIZE), '32768');
    assert.equal(await value(`${NF}/nf_conntrack_tcp_timeout_established`), '86400');
    assert.equal(await value(`${NF}/nf_conntrack_tcp_timeout_close_wait`), '3600');
    assert.equal(logs.filter((l) => l.msg === 'set conntrack sysctl').length, 4);

    const second = await setConntrackSysctls(DEFAULTS, { log: log(), root });
    assert.deepEqual(
      second.map((o) => o.result),
      ['unchanged', 'unchanged', 'unchanged', 'unchanged'],
    );
  });

  it('never lowers the table size, and sets a timeout down as well as up', async () => {
    await put(`${NF}/nf_conntrack_max`, '262144');
    await put(HASHSIZE, '262144');
    await put(`${NF}/nf_conntrack_tcp_timeout_established`, '3600');
    const r = await setConntrackSysctls(DEFAULTS, { log: log(), root });
    assert.deepEqual(
      r.map((o) => o.result),
      ['unchanged', 'unchanged', 'written', 'written'],
    );
    assert.equal(await value(`${NF}/nf_conntrack_max`), '262144');
    assert.equal(await value(`${NF}/nf_conntrack_tcp_timeout_established`), '86400');
  });

  it('a value it cannot write or that does not exist is logged and skipped; the rest are set', async () => {
    // A directory in place of the file: every read and write of it fails.
    await rm(join(root, HASHSIZE));
    await mkdir(join(root, HASHSIZE));
    // nf_conntrack not loaded: no such sysctl, and none is created.
    await rm(join(root, `${NF}/nf_conntrack_tcp_timeout_close_wait`));
    const r = await setConntrackSysctls(DEFAULTS, { log: log(), root });
    assert.deepEqual(
      r.map((o) => [o.result, o.code]),
      [
        ['written', undefined],
        ['skipped', 'EISDIR'],
        ['written', undefined],
        ['skipped', 'ENOENT'],
      ],
    );
    const warned = logs.filter((l) => l.msg === 'cannot set conntrack sysctl; going on');
    assert.deepEqual(
      warned.map((l) => [l.sysctl, l.code, l.level]),
      [
        [`/${HASHSIZE}`, 'EISDIR', 40],
        [`/${NF}/nf_conntrack_tcp_timeout_close_wait`, 'ENOENT', 40],
      ],
    );
    await assert.rejects(readFile(join(root, `${NF}/nf_conntrack_tcp_timeout_close_wait`)), {
      code: 'ENOENT',
    });
  });
});

describe('conntrack flags and config fields', () => {
  it('reads conntrack.* (v1alpha1) and linux.conntrack.* (v1alpha2); null keeps the default, 0 leaves alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'knp-config-'));
    try {
      const load = async (yaml: string): Promise<ConntrackConfig> => {
        await writeFile(join(dir, 'c.yaml'), yaml);
        return buildConfig(['--config', join(dir, 'c.yaml')], {}).conntrack;
      };
      assert.deepEqual(
        await load(
          'kind: KubeProxyConfiguration\nconntrack:\n  maxPerCore: 0\n  min: null\n  tcpEstablishedTimeout: 0s\n  tcpCloseWaitTimeout: 30m\n  tcpBeLiberal: true\n  udpTimeout: 10s\n  udpStreamTimeout: 2m0s\n',
        ),
        {
          maxPerCore: 0,
          min: 131072,
          tcpEstablishedTimeoutMs: 0,
          tcpCloseWaitTimeoutMs: 1_800_000,
          tcpBeLiberal: true,
          udpTimeoutMs: 10_000,
          udpStreamTimeoutMs: 120_000,
        },
      );
      const v2 = await load('kind: KubeProxyConfiguration\nlinux:\n  conntrack:\n    maxPerCore: 65536\n');
      assert.equal(v2.maxPerCore, 65536);
      // Flags win over the file.
      await writeFile(join(dir, 'c.yaml'), 'conntrack:\n  min: 5\n');
      assert.equal(buildConfig(['--config', join(dir, 'c.yaml'), '--conntrack-min=7'], {}).conntrack.min, 7);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the flag on a bad value', () => {
    for (const args of [
      ['--conntrack-max-per-core=-1'],
      ['--conntrack-min=lots'],
      ['--conntrack-tcp-timeout-established=1d'],
      ['--conntrack-udp-timeout=5'],
    ])
      assert.throws(
        () => buildConfig(args, {}),
        (err: unknown) => String(err).includes(args[0]!.split('=')[0]!),
        args.join(' '),
      );
  });

  it('--init-only is a switch, off by default', () => {
    assert.equal(buildConfig([], {}).initOnly, false);
    assert.equal(buildConfig(['--init-only'], {}).initOnly, true);
  });
});
