import assert from 'node:assert/strict';
import { FLAGS, parseArgs } from '../../src/config.js';
import { designFlags, designPath } from '../support/design-flags.js';
import { flagArgs, render } from './rendered.js';

/** The DaemonSet against the binary's command line: src/config.ts, and DESIGN.md's contract. */
describe('manifests/daemonset.yaml: ports, probes and flags match the binary', function () {
  const { container } = render();
  const args = container.args ?? [];
  const flags = flagArgs(args);
  const healthz = container.ports?.find((p) => p.name === 'healthz');
  const codeDefault = (name: string): string | undefined => FLAGS.find((f) => f.name === name)?.default;

  it("names the healthz port, and it is the default --healthz-bind-address's port (10256)", function () {
    assert.ok(healthz, 'a port named healthz');
    assert.equal(healthz.containerPort, 10256);
    assert.equal(codeDefault('healthz-bind-address'), `0.0.0.0:${healthz.containerPort}`);
    assert.ok(!flags.has('--healthz-bind-address'), 'the default is used, so the probes stay right');
  });

  it("DESIGN.md's defaults agree: --healthz-bind-address 0.0.0.0:10256, --metrics-bind-address 127.0.0.1:10249", function () {
    const design = designFlags();
    if (!design) {
      process.stderr.write(`    skipped: ${designPath} is not beside the repository\n`);
      this.skip();
    }
    const row = (flag: string): string | undefined => design.find((f) => f.names.includes(flag))?.default;
    assert.equal(row('--healthz-bind-address'), `0.0.0.0:${healthz?.containerPort}`);
    assert.equal(row('--metrics-bind-address'), codeDefault('metrics-bind-address'));
  });

  it('probes /livez for liveness and /healthz for readiness, on the healthz port', function () {
    assert.deepEqual(container.livenessProbe?.httpGet, { path: '/livez', port: 'healthz' });
    assert.deepEqual(container.readinessProbe?.httpGet, { path: '/healthz', port: 'healthz' });
  });

  it('passes only flags the CLI accepts, in --flag=value form, each once', function () {
    const known = new Set(FLAGS.flatMap((f) => [f.name, ...(f.aliases ?? [])]).map((n) => `--${n}`));
    assert.equal(flags.size, args.length, 'a flag is passed twice');
    for (const flag of flags.keys()) assert.ok(known.has(flag), `${flag} is not a kube-nftproxy flag`);
    assert.deepEqual([...flags.keys()].sort(), ['--config', '--hostname-override']);
    const parsed = parseArgs(args.map((a) => a.replace('$(NODE_NAME)', 'node-a')));
    assert.equal(parsed.get('hostname-override'), 'node-a');
    assert.equal(parsed.get('config'), flags.get('--config'));
  });

  it('expands only environment variables the container defines', function () {
    const env = new Set((container.env ?? []).map((e) => e.name));
    for (const arg of args) {
      for (const [, name] of arg.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
        assert.ok(env.has(name!), `${arg}: $(${name}) is not defined, Kubernetes would pass it literally`);
      }
    }
  });
});
