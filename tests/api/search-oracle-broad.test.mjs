// The brute-force oracle (search-oracle.test.mjs) again, with the store's "broad search" bound
// set to 3 index entries (BEVAN_SEARCH_BROAD): almost every search then takes the plans that a
// million-resource store uses for common codes and dates — the page read in rid order from one
// condition's index ("stream") or by walking the type ("scan"), a row budget that runs out and
// falls back to an IN set, counts by their own plan, and no default total — and every result
// must still equal the scan's, page by page. A second test walks those plans' pages forwards and
// backwards (previous links) and checks the totals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, runBevan, tempDir } from './lib/server.mjs';

process.env.BEVAN_SEARCH_BROAD = '3';
await import('./search-oracle.test.mjs');

const link = (b, rel) => (b.link || []).find((l) => l.relation === rel)?.url;

test('broad plans: pages forwards and backwards, totals only when asked or free', { timeout: 300_000 }, async () => {
  const dir = tempDir('bevan-broad-');
  const d = await runBevan(['demo', '--data', dir, '--patients', '8', '--seed', '5'], { timeoutMs: 120_000 });
  assert.equal(d.code, 0, d.stderr.slice(-2000));
  const srv = await startServer({ data: dir });
  const c = client(srv.base);
  try {
    const queries = [
      'Observation?code=http://loinc.org|8867-4&_count=4',                           // stream
      'Observation?code=8867-4,8310-5&_count=5',                                     // scan
      'Observation?code=http://loinc.org|8867-4&date=ge2000-01-01&_count=3',          // stream + probe, fallbacks
      'Observation?subject:Patient.gender=female&code=http://loinc.org|8867-4&_count=4', // chain probe
      'Patient?_has:Condition:subject:code=38341003&_count=1',                       // scan with a _has probe
    ];
    for (const q of queries) {
      const all = await c.get(`/${q.replace(/_count=\d+/, '_count=1000')}&_total=accurate`);
      assert.equal(all.status, 200, all.text.slice(0, 500));
      const want = (all.json.entry || []).map((e) => e.resource.id);
      assert.equal(all.json.total, want.length, `${q}: accurate total`);
      assert.ok(want.length > 2, `${q}: the demo population matches several (${want.length})`);
      const fwd = [];
      let url = `/${q}`;
      let last;
      for (let i = 0; url && i < 200; i++) {
        const r = await c.get(url);
        assert.equal(r.status, 200, r.text.slice(0, 500));
        if (i === 0) assert.equal(r.json.total, undefined, `${q}: a broad search has no default total`);
        fwd.push((r.json.entry || []).map((e) => e.resource.id));
        last = r.json;
        url = link(r.json, 'next');
      }
      assert.deepEqual(fwd.flat(), want, `${q}: the pages hold every match once, in order`);
      const back = [];
      url = link(last, 'previous');
      for (let i = 0; url && i < 200; i++) {
        const r = await c.get(url);
        assert.equal(r.status, 200, r.text.slice(0, 500));
        back.unshift((r.json.entry || []).map((e) => e.resource.id));
        url = link(r.json, 'previous');
      }
      assert.deepEqual(back, fwd.slice(0, -1), `${q}: previous links walk back over the same pages`);
      const cnt = await c.get(`/${q}&_summary=count`);
      assert.equal(cnt.json.total, want.length, `${q}: _summary=count`);
    }
  } finally {
    await srv.stop();
  }
});
