// Conditional create (If-None-Exist), conditional update and conditional delete; atomicity of
// concurrent conditional creates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, unique, TEST_SYSTEM } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const q = (system, value) => `identifier=${encodeURIComponent(`${system}|${value}`)}`;
const pat = (value, extra = {}) => ({ resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value }], ...extra });

test('If-None-Exist: first call creates (201), second returns the existing one (200)', async () => {
  const v = unique('ine');
  const a = await c.post('/Patient', pat(v), { headers: { 'If-None-Exist': q(TEST_SYSTEM, v) } });
  assert.equal(a.status, 201, a.text);
  const b = await c.post('/Patient', pat(v, { gender: 'male' }), { headers: { 'If-None-Exist': q(TEST_SYSTEM, v) } });
  assert.equal(b.status, 200, b.text);
  assert.equal(b.json.id, a.json.id, 'the existing resource is returned');
  assert.equal(b.json.meta.versionId, '1');
  assert.equal(b.json.gender, undefined, 'not updated');
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 1);
  // the "Type?criteria" form is accepted too
  const d = await c.post('/Patient', pat(v), { headers: { 'If-None-Exist': `Patient?${q(TEST_SYSTEM, v)}` } });
  assert.equal(d.status, 200);
  assert.equal(d.json.id, a.json.id);
});

test('If-None-Exist matching several resources -> 412, nothing created', async () => {
  const v = unique('dup');
  assert.equal((await c.post('/Patient', pat(v))).status, 201);
  assert.equal((await c.post('/Patient', pat(v))).status, 201);
  const r = await c.post('/Patient', pat(v), { headers: { 'If-None-Exist': q(TEST_SYSTEM, v) } });
  assertOutcome(r, 412, 'ambiguous conditional create');
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 2);
});

test('If-None-Exist with bad criteria -> 400, nothing created', async () => {
  const before_ = await c.historyTotal();
  assertOutcome(await c.post('/Patient', pat('x'), { headers: { 'If-None-Exist': 'nosuchparam=1' } }), 400, 'unknown param');
  assertOutcome(await c.post('/Patient', pat('x'), { headers: { 'If-None-Exist': '' } }), 400, 'empty');
  assert.equal(await c.historyTotal(), before_);
});

test('20 concurrent identical conditional creates make exactly one resource', async () => {
  for (let round = 0; round < 3; round++) {
    const v = unique('race');
    const rs = await Promise.all(Array.from({ length: 20 }, () =>
      c.post('/Patient', pat(v), { headers: { 'If-None-Exist': q(TEST_SYSTEM, v) } })));
    const statuses = rs.map((r) => r.status).sort();
    assert.equal(statuses.filter((s) => s === 201).length, 1, `one 201 (got ${statuses})`);
    assert.equal(statuses.filter((s) => s === 200).length, 19, `nineteen 200 (got ${statuses})`);
    assert.equal(new Set(rs.map((r) => r.json.id)).size, 1, 'all answers name the same resource');
    assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 1);
  }
});

test('conditional update: creates when nothing matches, then updates the match', async () => {
  const v = unique('cu');
  const a = await c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v, { gender: 'female' }));
  assert.equal(a.status, 201, a.text);
  assert.equal(a.json.meta.versionId, '1');
  assert.match(a.headers.get('location'), new RegExp(`/Patient/${a.json.id}/_history/1$`));
  const b = await c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v, { gender: 'male' }));
  assert.equal(b.status, 200, b.text);
  assert.equal(b.json.id, a.json.id);
  assert.equal(b.json.meta.versionId, '2');
  assert.equal(b.json.gender, 'male');
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 1);
  // an id in the body that differs from the match is a conflict
  const bad = await c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v, { id: 'someone-else' }));
  assertOutcome(bad, 409, 'id conflict');
  assert.equal((await c.get(`/Patient/${a.json.id}`)).json.meta.versionId, '2');
  // If-Match applies to the matched resource
  assertOutcome(await c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v), { headers: { 'If-Match': 'W/"1"' } }), 412, 'stale If-Match');
  const ok = await c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v), { headers: { 'If-Match': 'W/"2"' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.json.meta.versionId, '3');
});

test('conditional update with a client id in the body creates that id', async () => {
  const v = unique('cuid');
  const id = `cu-${Date.now()}`;
  const a = await c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v, { id }));
  assert.equal(a.status, 201, a.text);
  assert.equal(a.json.id, id);
});

test('conditional update matching several -> 412', async () => {
  const v = unique('cum');
  await c.post('/Patient', pat(v));
  await c.post('/Patient', pat(v));
  assertOutcome(await c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v)), 412, 'ambiguous conditional update');
});

test('concurrent conditional updates on a new identifier make one resource', async () => {
  const v = unique('cur');
  const rs = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    c.put(`/Patient?${q(TEST_SYSTEM, v)}`, pat(v, { birthDate: `2000-01-${String(i + 1).padStart(2, '0')}` }))));
  assert.equal(rs.filter((r) => r.status === 201).length, 1, rs.map((r) => r.status).join());
  assert.equal(rs.filter((r) => r.status === 200).length, 9);
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 1);
  const h = await c.get(`/Patient/${rs[0].json.id}/_history`);
  assert.equal(h.json.total, 10);
});

test('conditional delete: deletes the match, 204 with nothing to delete, 412 for several', async () => {
  const v = unique('cd');
  const a = await c.post('/Patient', pat(v));
  const d = await c.del(`/Patient?${q(TEST_SYSTEM, v)}`);
  assert.equal(d.status, 204, d.text);
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 0);
  assertOutcome(await c.get(`/Patient/${a.json.id}`), 410, 'read after conditional delete');
  const again = await c.del(`/Patient?${q(TEST_SYSTEM, v)}`);
  assert.equal(again.status, 204, 'nothing matches: still success');
  const w = unique('cdm');
  await c.post('/Patient', pat(w));
  await c.post('/Patient', pat(w));
  assertOutcome(await c.del(`/Patient?${q(TEST_SYSTEM, w)}`), 412, 'conditional delete of several');
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, w)}`), 2);
});
