// History at instance, type and system level, with _since, _at and paging through `next` links.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, TEST_SYSTEM } from './lib/server.mjs';

let srv;
let c;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const made = []; // {type, id, version, lastUpdated}
let tMiddle; // an instant between the first and second batch of writes
let patientId;

before(async () => {
  srv = await startServer();
  c = client(srv.base);
  // batch 1: 12 Patients, 1 updated twice, 1 deleted; 5 Observations
  for (let i = 0; i < 12; i++) {
    const r = await c.post('/Patient', { resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value: `h${i}` }] });
    assert.equal(r.status, 201);
    made.push({ type: 'Patient', id: r.json.id, version: 1, lu: r.json.meta.lastUpdated });
  }
  patientId = made[0].id;
  for (let v = 2; v <= 3; v++) {
    const r = await c.put(`/Patient/${patientId}`, { resourceType: 'Patient', id: patientId, gender: v === 2 ? 'male' : 'female' });
    assert.equal(r.status, 200);
    made.push({ type: 'Patient', id: patientId, version: v, lu: r.json.meta.lastUpdated });
  }
  assert.equal((await c.del(`/Patient/${made[1].id}`)).status, 204);
  made.push({ type: 'Patient', id: made[1].id, version: 2, deleted: true });
  for (let i = 0; i < 5; i++) {
    const r = await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: `o${i}` } });
    assert.equal(r.status, 201);
    made.push({ type: 'Observation', id: r.json.id, version: 1, lu: r.json.meta.lastUpdated });
  }
  await sleep(50);
  tMiddle = new Date().toISOString();
  await sleep(50);
  // batch 2: patient 0 gets version 4, 3 more Observations
  const r4 = await c.put(`/Patient/${patientId}`, { resourceType: 'Patient', id: patientId, gender: 'other' });
  assert.equal(r4.status, 200);
  made.push({ type: 'Patient', id: patientId, version: 4, lu: r4.json.meta.lastUpdated });
  for (let i = 0; i < 3; i++) {
    const r = await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: `late${i}` } });
    made.push({ type: 'Observation', id: r.json.id, version: 1, lu: r.json.meta.lastUpdated });
  }
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const key = (e) => {
  const [type, id] = e.fullUrl.split('/').slice(-2);
  const v = e.resource ? e.resource.meta.versionId : (e.response.etag || '').replace(/\D/g, '');
  return `${type}/${id}/${v}`;
};
const madeKeys = (pred = () => true) => made.filter(pred).map((m) => `${m.type}/${m.id}/${m.version}`);

test('instance history: every version, newest first, with request/response', async () => {
  const h = await c.get(`/Patient/${patientId}/_history`);
  assert.equal(h.status, 200, h.text);
  assert.equal(h.json.resourceType, 'Bundle');
  assert.equal(h.json.type, 'history');
  assert.equal(h.json.total, 4);
  assert.deepEqual(h.json.entry.map((e) => e.resource.meta.versionId), ['4', '3', '2', '1']);
  assert.deepEqual(h.json.entry.map((e) => e.request.method), ['PUT', 'PUT', 'PUT', 'POST']);
  for (const e of h.json.entry) {
    assert.equal(e.fullUrl, `${srv.base}/Patient/${patientId}`);
    assert.equal(e.response.etag, `W/"${e.resource.meta.versionId}"`);
    assert.match(e.response.status, /^20[01]/);
  }
  assertOutcome(await c.get('/Patient/nobody/_history'), 404, 'history of an unknown resource');
});

test('deleted resource: instance history shows the deletion without a resource', async () => {
  const h = await c.get(`/Patient/${made[1].id}/_history`);
  assert.equal(h.json.total, 2);
  assert.equal(h.json.entry[0].request.method, 'DELETE');
  assert.equal(h.json.entry[0].resource, undefined);
  assert.match(h.json.entry[0].response.status, /^204|^200/);
});

test('type history: all versions of that type and nothing else', async () => {
  const { entries } = await c.allPages('/Patient/_history?_count=1000');
  assert.deepEqual(entries.map(key).sort(), madeKeys((m) => m.type === 'Patient').sort());
  const o = await c.get('/Observation/_history');
  assert.equal(o.json.total, 8);
});

test('system history: all versions of all types', async () => {
  const h = await c.get('/_history?_count=1000');
  assert.equal(h.status, 200);
  assert.equal(h.json.total, made.length);
  assert.deepEqual(h.json.entry.map(key).sort(), madeKeys().sort());
  // newest first
  const lus = h.json.entry.filter((e) => e.resource).map((e) => Date.parse(e.resource.meta.lastUpdated));
  for (let i = 1; i < lus.length; i++) assert.ok(lus[i - 1] >= lus[i], 'newest first');
});

test('paging via next links: every version exactly once, at every level and page size', async () => {
  for (const [path, pred] of [['/_history', () => true], ['/Patient/_history', (m) => m.type === 'Patient'],
    ['/Observation/_history', (m) => m.type === 'Observation'], [`/Patient/${patientId}/_history`, (m) => m.id === patientId]]) {
    for (const n of [1, 3, 7]) {
      const { entries, pages } = await c.allPages(`${path}?_count=${n}`);
      const keys = entries.map(key);
      assert.equal(new Set(keys).size, keys.length, `${path} _count=${n}: no duplicates`);
      assert.deepEqual(keys.sort(), madeKeys(pred).sort(), `${path} _count=${n}: all versions`);
      assert.ok(pages >= Math.ceil(keys.length / n), `${path} _count=${n}: ${pages} pages`);
    }
  }
});

test('paging is stable while writes happen between pages', async () => {
  const first = await c.get('/Observation/_history?_count=3');
  const seen = first.json.entry.map(key);
  // a new write arrives between page 1 and page 2
  const extra = await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'between' } });
  let url = first.json.link.find((l) => l.relation === 'next')?.url;
  let guard = 0;
  while (url && guard++ < 100) {
    const r = await c.get(url);
    seen.push(...r.json.entry.map(key));
    url = r.json.link.find((l) => l.relation === 'next')?.url;
  }
  assert.equal(new Set(seen).size, seen.length, 'no version twice');
  assert.deepEqual(seen.sort(), madeKeys((m) => m.type === 'Observation').sort(), 'the snapshot of page 1');
  assert.equal((await c.del(`/Observation/${extra.json.id}`)).status, 204);
  const lu = extra.json.meta.lastUpdated; // both versions are after tMiddle
  made.push({ type: 'Observation', id: extra.json.id, version: 1, lu }, { type: 'Observation', id: extra.json.id, version: 2, lu });
});

test('_since: only versions at or after the instant', async () => {
  const { entries } = await c.allPages(`/_history?_since=${encodeURIComponent(tMiddle)}&_count=2`);
  const keys = entries.map(key).sort();
  const want = made.filter((m) => m.lu && m.lu >= tMiddle).map((m) => `${m.type}/${m.id}/${m.version}`);
  assert.ok(want.length >= 6);
  assert.deepEqual(keys, want.sort());
  const pi = await c.get(`/Patient/${patientId}/_history?_since=${encodeURIComponent(tMiddle)}`);
  assert.deepEqual(pi.json.entry.map((e) => e.resource.meta.versionId), ['4']);
  const future = await c.get(`/_history?_since=${encodeURIComponent(new Date(Date.now() + 86400_000).toISOString())}`);
  assert.equal(future.status, 200);
  assert.equal((future.json.entry || []).length, 0);
  assertOutcome(await c.get('/_history?_since=yesterday'), 400, 'bad _since');
});

test('_at: the version current at that instant', async () => {
  const r = await c.get(`/Patient/${patientId}/_history?_at=${encodeURIComponent(tMiddle)}`);
  assert.equal(r.status, 200, r.text);
  const versions = r.json.entry.map((e) => e.resource.meta.versionId);
  assert.deepEqual(versions, ['3'], `at tMiddle version 3 was current (got ${versions})`);
  const all = await c.get(`/Patient/_history?_at=${encodeURIComponent(tMiddle)}&_count=100`);
  assert.equal(all.status, 200);
  // one entry per Patient that existed at tMiddle, the version current then
  const byId = new Map(all.json.entry.map((e) => [e.fullUrl.split('/').at(-1), e]));
  assert.equal(byId.size, all.json.entry.length, 'one version per resource');
  assert.equal(byId.get(patientId).resource.meta.versionId, '3');
  assert.ok(byId.has(made[2].id));
  assertOutcome(await c.get('/_history?_at=notadate'), 400, 'bad _at');
});

test('unknown history parameters are refused', async () => {
  assertOutcome(await c.get('/_history?foo=bar'), 400, 'unknown parameter');
  assertOutcome(await c.get('/_history?_count=-1'), 400, 'negative _count');
});
