// Mixed concurrent load: writers (create, update with If-Match, patch, delete, transactions) and
// readers (read, vread, search, history) at once, for a bounded time. No 5xx, no lost update,
// versions only move forward, and the store checks clean afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, runBevan, tempDir, TEST_SYSTEM } from './lib/server.mjs';
import { rmSync } from 'node:fs';

let srv;
let c;
let data;
before(async () => { data = tempDir('bevan-conc-'); srv = await startServer({ data }); c = client(srv.base); });
after(async () => {
  if (srv) { await srv.stop(); srv.kill(); }
  if (data) rmSync(data, { recursive: true, force: true });
});

test('mixed readers and writers for a few seconds', async () => {
  const ids = [];
  for (let i = 0; i < 10; i++) {
    const r = await c.post('/Patient', { resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value: `c${i}` }], gender: 'unknown' });
    ids.push(r.json.id);
  }
  const until = Date.now() + 4000;
  const errors = [];
  const lastSeen = new Map(); // id -> highest version a reader saw
  let updates = 0;
  let conflicts = 0;
  const check = (r, what) => { if (r.status >= 500) errors.push(`${what}: ${r.status} ${r.text.slice(0, 200)}`); };

  const writer = async (w) => {
    let k = 0;
    while (Date.now() < until) {
      const id = ids[(w + k++) % ids.length];
      const cur = await c.get(`/Patient/${id}`);
      check(cur, 'read');
      if (cur.status !== 200) continue;
      const v = cur.json.meta.versionId;
      const r = k % 3 === 0
        ? await c.patch(`/Patient/${id}`, [{ op: 'replace', path: '/gender', value: k % 2 ? 'male' : 'female' }], { headers: { 'If-Match': `W/"${v}"` } })
        : await c.put(`/Patient/${id}`, { ...cur.json, birthDate: `19${String(10 + (k % 80)).padStart(2, '0')}-01-01` }, { headers: { 'If-Match': `W/"${v}"` } });
      check(r, 'write');
      if (r.status === 200) {
        updates++;
        assert.equal(Number(r.json.meta.versionId), Number(v) + 1, 'an If-Match write makes exactly the next version');
      } else if (r.status === 412) conflicts++;
      else errors.push(`write ${r.status}: ${r.text.slice(0, 200)}`);
      if (k % 5 === 0) {
        const t = await c.post('', { resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl: 'urn:uuid:6f1c9a1e-0000-4000-8000-00000000000' + (w % 10), resource: { resourceType: 'Patient', gender: 'other' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation', status: 'final', code: { text: 'c' }, subject: { reference: 'urn:uuid:6f1c9a1e-0000-4000-8000-00000000000' + (w % 10) } }, request: { method: 'POST', url: 'Observation' } },
        ] });
        check(t, 'transaction');
        if (t.status === 200) {
          const loc = t.json.entry[0].response.location.split('/')[1];
          assert.equal((await c.del(`/Patient/${loc}`)).status, 204);
        } else errors.push(`transaction ${t.status}`);
      }
    }
  };
  const reader = async (n) => {
    let k = 0;
    while (Date.now() < until) {
      const id = ids[(n * 3 + k++) % ids.length];
      const r = await c.get(`/Patient/${id}`);
      check(r, 'read');
      if (r.status === 200) {
        const v = Number(r.json.meta.versionId);
        assert.equal(r.headers.get('etag'), `W/"${v}"`, 'ETag matches the body');
        const prev = lastSeen.get(`${n}/${id}`) || 0;
        assert.ok(v >= prev, `reader ${n} saw ${id} go back from ${prev} to ${v}`);
        lastSeen.set(`${n}/${id}`, v);
      }
      if (k % 4 === 0) check(await c.get(`/Patient?identifier=${encodeURIComponent(`${TEST_SYSTEM}|c${k % 10}`)}`), 'search');
      if (k % 7 === 0) check(await c.get(`/Patient/${id}/_history?_count=5`), 'history');
      if (k % 9 === 0) check(await c.get('/Observation?_summary=count'), 'count');
    }
  };
  await Promise.all([...Array.from({ length: 6 }, (_, w) => writer(w)), ...Array.from({ length: 6 }, (_, n) => reader(n))]);
  assert.deepEqual(errors, []);
  assert.ok(updates > 10, `${updates} updates went through (${conflicts} If-Match conflicts)`);
  // no lost update: each patient's version = 1 + the number of its successful writes
  let versions = 0;
  for (const id of ids) {
    const h = await c.get(`/Patient/${id}/_history?_count=1000`);
    const vs = h.json.entry.map((e) => Number(e.resource.meta.versionId));
    assert.deepEqual(vs, Array.from({ length: vs.length }, (_, i) => vs.length - i), `${id}: versions contiguous`);
    versions += vs.length - 1;
  }
  assert.equal(versions, updates, 'every acknowledged update is in history, no more');
});

test('the store checks clean after the load', async () => {
  await srv.stop();
  const chk = await runBevan(['check', '--data', data]);
  assert.equal(chk.sanitizer, null, chk.stderr);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
  srv.kill();
  srv = null;
});
