// 64 clients race If-Match updates on one resource: exactly one winner per version, every loser
// gets 412 with an OperationOutcome, and _history holds every version from 1 to the last without a
// gap, each carrying the body its winner sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer({ args: ['--rate-limit', '0'] }); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

test('64 concurrent If-Match updaters: one winner per version, the rest 412, no gaps in _history', async () => {
  const created = await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Race', given: ['v1'] }] });
  assert.equal(created.status, 201);
  const id = created.json.id;
  const winners = new Map(); // version -> marker
  const statuses = {};
  const CLIENTS = 64;
  const TRIES = 4;
  await Promise.all(Array.from({ length: CLIENTS }, async (_, k) => {
    for (let i = 0; i < TRIES; i++) {
      const cur = await c.get(`/Patient/${id}`);
      assert.equal(cur.status, 200);
      const v = Number(cur.json.meta.versionId);
      const marker = `c${k}-t${i}`;
      const r = await c.put(`/Patient/${id}`, { resourceType: 'Patient', id, name: [{ family: 'Race', given: [marker] }] },
        { headers: { 'If-Match': `W/"${v}"` } });
      statuses[r.status] = (statuses[r.status] || 0) + 1;
      if (r.status === 200) {
        const nv = Number(r.json.meta.versionId);
        assert.equal(nv, v + 1, 'a winner makes exactly the next version');
        assert.ok(!winners.has(nv), `two winners for version ${nv}: ${winners.get(nv)} and ${marker}`);
        winners.set(nv, marker);
      } else {
        assertOutcome(r, 412, `If-Match W/"${v}" loser`);
      }
    }
  }));
  assert.deepEqual(Object.keys(statuses).sort(), Object.keys(statuses).filter((s) => s === '200' || s === '412').sort(), JSON.stringify(statuses));
  assert.ok(winners.size >= TRIES, `some updates won (${JSON.stringify(statuses)})`);
  const last = Math.max(...winners.keys());
  assert.equal(last, winners.size + 1, 'versions 2..last each have exactly one winner');
  const h = await c.allPages(`/Patient/${id}/_history?_count=100`);
  const versions = h.entries.map((e) => Number(e.resource.meta.versionId)).sort((a, b) => a - b);
  assert.deepEqual(versions, Array.from({ length: last }, (_, i) => i + 1), 'history has every version, no gaps, no duplicates');
  for (const e of h.entries) {
    const v = Number(e.resource.meta.versionId);
    if (v > 1) assert.equal(e.resource.name[0].given[0], winners.get(v), `version ${v} holds its winner's body`);
  }
});
