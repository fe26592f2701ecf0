/**
 * maglev-frontends: what one Maglev Service (2 endpoints, M = 16381) costs as its external IPs
 * grow (issue #11): elements, nft text, compile time, and a full load with the real nft into a
 * throwaway namespace (wall time, nft's peak RSS). The reference, built and loaded in the same
 * run: the same ruleset with the table written once per frontend into backends-tcp, as the
 * layout before per-port Maglev tables did (at 30 external IPs that reference needs 1.2 GB of
 * nft memory: the full run stops at 10).
 */
import { buildState } from '../src/model/build-state.js';
import { fullTransaction } from '../src/rules/diff.js';
import { compile, type CompileConfig } from '../src/rules/compile.js';
import type { Element } from '../src/rules/nft/types.js';
import { rulesetSize, type Ruleset } from '../src/rules/ruleset.js';
import { service, slice } from '../test/support/objects.js';
import { ms, round, type Bench, type BenchResult, missingRootOrTools, NFT } from './harness.js';
import { Netns, TimedExec } from './nft-load.js';

const config: CompileConfig = {
  table: 'kube-nftproxy',
  clusterCIDRs: ['10.244.0.0/16'],
  masqueradeAll: false,
  serviceCIDRs: [],
  nodePortIPs: { ipv4: ['192.168.0.10'], ipv6: [] },
};

function maglevService(externalIPs: number): Ruleset {
  return compile(
    buildState(
      {
        services: [
          service(
            'ns',
            'big',
            {
              clusterIP: '10.96.5.5',
              externalIPs: Array.from({ length: externalIPs }, (_, i) => `192.0.2.${i + 1}`),
              ports: [{ port: 80, targetPort: 8080 }],
            },
            { annotations: { 'kube-nftproxy.io/lb-algorithm': 'maglev' } },
          ),
        ],
        slices: [
          slice(
            'ns',
            'big-1',
            'big',
            [{ port: 8080 }],
            [
              { ip: '10.244.1.5', nodeName: 'n1' },
              { ip: '10.244.2.5', nodeName: 'n2' },
            ],
          ),
        ],
      },
      { nodeName: 'n1', nodeIPs: ['192.168.0.10'], lbAlgorithm: 'random' },
    ),
    config,
  );
}

/** The reference: every frontend's own copy of the table in backends-tcp, the tables' maps empty. */
function perFrontendCopies(rs: Ruleset): Ruleset {
  const fragments = rs.fragments.map((f) => {
    const slots = new Map<string, Element[]>();
    for (const el of f.elements)
      if (/^maglev-[0-9a-f]{12}-/.test(el.set)) slots.set(el.set, [...(slots.get(el.set) ?? []), el]);
    const elements: Element[] = f.elements.filter((el) => !slots.has(el.set));
    for (const el of f.elements) {
      if (el.set !== 'maglev-ports') continue;
      // backends-tcp's key is the frontend's address and port (its map is of one protocol) and a slot.
      const [ip, , port] = el.key.split(' . ');
      for (const s of slots.get(el.value!.slice('goto '.length)) ?? [])
        elements.push({ ...s, set: 'backends-tcp', key: `${ip} . ${port} . ${s.key}` });
    }
    return { ...f, elements };
  });
  return { ...rs, fragments };
}

export const bench: Bench = {
  name: 'maglev-frontends',

  async unavailable() {
    return missingRootOrTools('network namespaces and nftables need CAP_NET_ADMIN', [NFT]);
  },

  async run(ctx): Promise<BenchResult> {
    const figures: BenchResult['figures'] = {};
    const lines: string[] = ['maglev-frontends: 1 Maglev Service, 2 endpoints (M = 16381), N external IPs'];
    const ns = new Netns(`knp-bench-${process.pid}`);
    const timed = new TimedExec(ns.name);
    Netns.sweepStale();
    ns.create();
    try {
      for (const n of ctx.quick ? [1] : [1, 10]) {
        const start = process.hrtime.bigint();
        const ours = maglevService(n);
        const compileMs = ms(start);
        const layouts: Array<[string, Ruleset]> = [
          ['ours', ours],
          ['per-frontend', perFrontendCopies(ours)],
        ];
        const row: string[] = [];
        for (const [name, rs] of layouts) {
          const text = fullTransaction(rs).toString();
          ctx.say(`  ${n} external IPs, ${name}: loading ${round(text.length / 1e6, 2)} MB`);
          const stats = await timed.load(text, `${name} ${n}`);
          ns.flush();
          const { elements } = rulesetSize(rs);
          figures[`${name}_elements@${n}`] = elements;
          figures[`${name}_text_kb@${n}`] = round(text.length / 1024);
          figures[`${name}_nft_load_ms@${n}`] = round(stats.wallMs);
          figures[`${name}_nft_peak_rss_mb@${n}`] = stats.peakRssMb;
          row.push(
            `${name}: ${elements} elements, ${round(text.length / 1e6, 2)} MB, nft ${round(stats.wallMs)} ms, ${stats.peakRssMb ?? '?'} MB`,
          );
        }
        figures[`compile_ms@${n}`] = round(compileMs);
        const ratio =
          (figures[`per-frontend_elements@${n}`] as number) / (figures[`ours_elements@${n}`] as number);
        lines.push(`  ${n} external IPs: ${row.join('; ')}; ${round(ratio)}× fewer elements`);
      }
    } finally {
      ns.del();
      timed.cleanup();
    }
    return { figures, lines };
  },
};
