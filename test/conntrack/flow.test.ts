import assert from 'node:assert/strict';
import { origDport, parseFlow } from '../../src/conntrack/flow.js';

describe('conntrack listing lines', () => {
  it('reads the original and reply tuples', () => {
    const line =
      'udp      17 29 src=10.244.5.5 dst=10.96.0.10 sport=40000 dport=53 src=10.244.1.1 dst=10.244.5.5 sport=5353 dport=40000 [ASSURED] mark=0 use=1';
    assert.deepEqual(parseFlow(line), {
      origSrc: '10.244.5.5',
      origDst: '10.96.0.10',
      origSport: 40000,
      origDport: 53,
      replySrc: '10.244.1.1',
      replySport: 5353,
    });
  });

  it('reads an unreplied entry and canonicalises IPv6', () => {
    const line =
      'udp      17 3599 src=fd00:0:0::5 dst=FD00:10:96::a sport=1 dport=53 [UNREPLIED] src=fd00:10:244:1::1 dst=fd00::5 sport=5353 dport=1 mark=0 zone=3 use=1';
    const f = parseFlow(line);
    assert.equal(f?.origSrc, 'fd00::5');
    assert.equal(f?.origDst, 'fd00:10:96::a');
    assert.equal(f?.replySrc, 'fd00:10:244:1::1');
    assert.equal(f?.replySport, 5353);
  });

  it('ignores what is not an entry with ports', () => {
    for (const line of [
      '',
      'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.',
      'icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=1 mark=0 use=1',
      'udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=70000 dport=53 src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1 use=1',
      'udp      17 29 src=nonsense dst=10.0.0.2 sport=1 dport=53 src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1 use=1',
    ]) {
      assert.equal(parseFlow(line), undefined, line);
    }
  });
});

describe('the first look at a listing line', () => {
  it('reads the original destination port alone', () => {
    assert.equal(
      origDport(
        'udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=53 src=10.0.0.2 dst=10.0.0.1 sport=5353 dport=1',
      ),
      53,
    );
    assert.equal(origDport('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.'), -1);
  });
});
