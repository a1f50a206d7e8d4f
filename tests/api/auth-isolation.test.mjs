// Patient isolation (reliability-security.md §D 17-22): a patient-context token for A reaches B by
// no route — read, vread, history, search, chains, _has, _include/_revinclude (:iterate),
// compartments, $everything, counts, batch and transaction entries, conditional create / update /
// delete, PATCH, writes — and 64 concurrent clients with different patients' tokens only ever see
// their own patient's data. Denial style (docs/security.md): a named resource of another patient
// is 404 "not known", searches are filtered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, pool, SLOW } from './lib/server.mjs';
import { authKit } from './lib/auth.mjs';

let srv, kit, sys;
const U = `iso${process.pid}${Date.now().toString(36)}`;
const A = `${U}-pat-a`, B = `${U}-pat-b`;
const PRAC = `${U}-prac`;
const VITAL = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';
const LAB = 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory';
const ids = { [A]: [], [B]: [] };   // every resource id of each patient's compartment

function obs(id, pid, { cat = 'vital-signs', code = '8867-4', performer = true } = {}) {
  return {
    resourceType: 'Observation', id, status: 'final',
    identifier: [{ system: 'http://example.org/obs', value: `ident-${id}` }],
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: cat }] }],
    code: { coding: [{ system: 'http://loinc.org', code }] },
    subject: { reference: `Patient/${pid}` },
    ...(performer ? { performer: [{ reference: `Practitioner/${PRAC}` }] } : {}),
    valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

async function put(res) {
  const r = await sys.put(`/${res.resourceType}/${res.id}`, res);
  assert.ok(r.status === 201 || r.status === 200, r.text);
}

before(async () => {
  srv = await startServer({ auth: true });
  kit = await authKit(srv);
  sys = kit.as(kit.system());
  await put({ resourceType: 'Practitioner', id: PRAC, name: [{ family: 'Shared' }] });
  for (const [pid, fam] of [[A, `Alpha${U}`], [B, `Bravo${U}`]]) {
    await put({ resourceType: 'Patient', id: pid, name: [{ family: fam }] });
    ids[pid].push(pid);
    const o1 = obs(`${pid}-vital`, pid);
    const o2 = obs(`${pid}-lab`, pid, { cat: 'laboratory', code: pid === B ? '99999-9' : '2345-7' });
    const cond = { resourceType: 'Condition', id: `${pid}-cond`, subject: { reference: `Patient/${pid}` },
      code: { text: 'asthma' } };
    const enc = { resourceType: 'Encounter', id: `${pid}-enc`, status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: `Patient/${pid}` } };
    for (const r of [o1, o2, cond, enc]) { await put(r); ids[pid].push(r.id); }
  }
  // a second version of B's observation, for history
  const o = obs(`${B}-vital`, B);
  o.valueQuantity.value = 80;
  await put(o);
});

after(async () => { if (srv) await srv.stop(); });

/** Assert that nothing of B appears in a response to A (the URL's own words excepted). */
function noB(r, what, requested = '') {
  assert.ok(r.status < 500, `${what}: ${r.status} ${r.text.slice(0, 300)}`);
  for (const id of ids[B]) {
    if (requested.includes(id)) continue;
    assert.ok(!r.text.includes(id), `${what}: response holds B's ${id}: ${r.text.slice(0, 600)}`);
  }
  // entries never are B's, whatever the URL named
  const bundles = [];
  if (r.json && r.json.resourceType === 'Bundle') bundles.push(r.json);
  for (const b of bundles) {
    for (const e of b.entry || []) {
      if (e.resource && e.resource.resourceType === 'Bundle') { bundles.push(e.resource); continue; }
      if (e.resource && e.resource.resourceType === 'OperationOutcome') continue;
      const s = JSON.stringify(e.resource || {});
      for (const id of ids[B]) assert.ok(!s.includes(id), `${what}: an entry holds B's ${id}`);
    }
  }
}

test('reads of B by A: 404 "not known" (read, vread, history, $everything, compartment)', async () => {
  const a = kit.as(kit.patient(A));
  for (const p of [`/Patient/${B}`, `/Observation/${B}-vital`, `/Observation/${B}-vital/_history/1`,
    `/Observation/${B}-vital/_history/2`, `/Observation/${B}-vital/_history`, `/Patient/${B}/_history`,
    `/Patient/${B}/$everything`, `/Patient/${B}/Observation`, `/Patient/${B}/*`, `/Condition/${B}-cond`]) {
    const r = await a.get(p);
    assert.equal(r.status, 404, `${p}: ${r.text.slice(0, 300)}`);
    noB(r, p, p);
    // identical to a resource that does not exist at all
    const none = await a.get(p.replace(B, `${U}-nobody`));
    assert.equal(none.status, 404);
    assert.equal(r.json.issue[0].code, none.json.issue[0].code);
  }
  // A's own
  for (const p of [`/Patient/${A}`, `/Observation/${A}-vital`, `/Observation/${A}-vital/_history/1`, `/Patient/${A}/_history`]) {
    const r = await a.get(p);
    assert.equal(r.status, 200, `${p}: ${r.text.slice(0, 300)}`);
    noB(r, p);
  }
  const ev = await a.get(`/Patient/${A}/$everything`);
  assert.equal(ev.status, 200);
  noB(ev, '$everything');
  const evIds = ev.json.entry.map((e) => e.resource.id);
  for (const id of ids[A]) assert.ok(evIds.includes(id), `$everything lacks ${id}`);
});

test('searches by A never return B: filters, chains, _has, includes, :iterate, counts, system search, POST _search', async () => {
  const a = kit.as(kit.patient(A));
  const q = [
    `/Observation?patient=${B}`, `/Observation?subject=Patient/${B}`, `/Observation?subject:Patient.name=Bravo${U}`,
    `/Observation?subject.name=Bravo${U}`, `/Observation?code=99999-9`, `/Patient?name=Bravo${U}`, `/Patient?_id=${B}`,
    `/Patient?_has:Observation:subject:code=99999-9`, `/Practitioner?_has:Observation:performer:code=99999-9`,
    `/Observation?_include=Observation:subject`, `/Practitioner?_revinclude=Observation:performer`,
    `/Observation?_include=Observation:performer&_revinclude:iterate=Observation:performer`,
    `/Practitioner?_id=${PRAC}&_revinclude=Observation:performer&_include:iterate=Observation:subject`,
    `/Observation?_summary=count`, `/Observation?_total=accurate`, `/?_type=Observation,Patient,Condition`, '/',
    `/Patient/${A}/Observation?_revinclude=Observation:performer`, `/Encounter?_revinclude=Observation:encounter`,
    '/Observation?_count=1',
  ];
  for (const p of q) {
    const r = await a.get(p);
    assert.equal(r.status, 200, `${p}: ${r.text.slice(0, 300)}`);
    noB(r, p, p);
  }
  const cnt = await a.get('/Observation?_summary=count');
  assert.equal(cnt.json.total, 2, 'A has two observations');
  const bcount = await a.get(`/Observation?patient=${B}&_summary=count`);
  assert.equal(bcount.json.total, 0);
  const has = await a.get('/Patient?_has:Observation:subject:code=99999-9');
  assert.equal((has.json.entry || []).length, 0, 'the _has oracle says nothing about B');
  const prac = await a.get(`/Practitioner?_has:Observation:performer:code=99999-9`);
  assert.equal((prac.json.entry || []).length, 0, '_has on a shared resource is restricted too');
  // paging stays correct: _count=1 pages walk A's observations only
  let url = '/Observation?_count=1';
  const got = [];
  for (let i = 0; i < 10 && url; i++) {
    const r = await a.get(url);
    noB(r, url);
    for (const e of r.json.entry || []) got.push(e.resource.id);
    const next = (r.json.link || []).find((l) => l.relation === 'next');
    url = next ? next.url : null;
  }
  assert.deepEqual(got.sort(), [`${A}-lab`, `${A}-vital`]);
  const post = await a.post('/Observation/_search', `patient=${B}`, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(post.status, 200);
  noB(post, 'POST _search', B);
  // type and system history are not for patient tokens
  assert.equal((await a.get('/_history')).status, 403);
  assert.equal((await a.get('/Observation/_history')).status, 403);
});

test('batch and transaction entries are authorised one by one', async () => {
  const a = kit.as(kit.patient(A, 'patient/*.cruds'));
  const batch = { resourceType: 'Bundle', type: 'batch', entry: [
    { request: { method: 'GET', url: `Patient/${B}` } },
    { request: { method: 'GET', url: `Observation?patient=${B}` } },
    { request: { method: 'GET', url: `Observation/${B}-lab` } },
    { request: { method: 'GET', url: `Patient/${A}` } },
    { request: { method: 'DELETE', url: `Observation/${B}-lab` } },
  ] };
  const r = await a.post('/', batch);
  assert.equal(r.status, 200, r.text);
  noB(r, 'batch', JSON.stringify(batch));
  const st = r.json.entry.map((e) => e.response.status.slice(0, 3));
  assert.deepEqual(st, ['404', '200', '404', '200', '404']);
  const tx = { resourceType: 'Bundle', type: 'transaction', entry: [
    { request: { method: 'GET', url: `Observation/${B}-lab` } },
  ] };
  const t1 = await a.post('/', tx);
  assert.equal(t1.status, 404, t1.text);
  noB(t1, 'transaction read', JSON.stringify(tx));
  const tx2 = { resourceType: 'Bundle', type: 'transaction', entry: [
    { request: { method: 'GET', url: `Observation?patient=${B}` } },
  ] };
  const t2 = await a.post('/', tx2);
  assert.equal(t2.status, 200, t2.text);
  noB(t2, 'transaction search', JSON.stringify(tx2));
  const tx3 = { resourceType: 'Bundle', type: 'transaction', entry: [
    { fullUrl: 'urn:uuid:11111111-1111-4111-8111-111111111111', resource: obs(undefined, B, { performer: false }),
      request: { method: 'POST', url: 'Observation' } },
  ] };
  delete tx3.entry[0].resource.id;
  const t3 = await a.post('/', tx3);
  assert.equal(t3.status, 403, t3.text);
  assert.equal((await sys.get(`/Observation/${B}-lab`)).status, 200, 'B untouched');
});

test('writes: A cannot create, move, change or delete into B; conditional forms never match B', async () => {
  const a = kit.as(kit.patient(A, 'patient/*.cruds'));
  const toB = obs(undefined, B, { performer: false });
  delete toB.id;
  const c1 = await a.post('/Observation', toB);
  assert.equal(c1.status, 403, c1.text);
  noB(c1, 'create for B', B);
  // move A's observation to B
  const mine = (await a.get(`/Observation/${A}-vital`)).json;
  const moved = { ...mine, subject: { reference: `Patient/${B}` } };
  const m = await a.put(`/Observation/${A}-vital`, moved);
  assert.equal(m.status, 403, m.text);
  const pm = await a.patch(`/Observation/${A}-vital`, [{ op: 'replace', path: '/subject/reference', value: `Patient/${B}` }]);
  assert.equal(pm.status, 403, pm.text);
  // B's resources by id: 404, unchanged
  const bo = (await sys.get(`/Observation/${B}-lab`)).json;
  assert.equal((await a.put(`/Observation/${B}-lab`, { ...bo, subject: { reference: `Patient/${A}` } })).status, 404);
  assert.equal((await a.patch(`/Observation/${B}-lab`, [{ op: 'replace', path: '/status', value: 'cancelled' }])).status, 404);
  assert.equal((await a.del(`/Observation/${B}-lab`)).status, 404);
  assert.equal((await a.del(`/Patient/${B}`)).status, 404);
  // conditional create / update / delete on B's identifier: B's resource is never matched
  const ine = obs(undefined, A, { performer: false });
  delete ine.id;
  const cc = await a.post('/Observation', ine, { headers: { 'If-None-Exist': `identifier=http://example.org/obs|ident-${B}-lab` } });
  assert.equal(cc.status, 201, cc.text);
  noB(cc, 'conditional create', B);
  const cu = await a.put(`/Observation?identifier=http://example.org/obs|ident-${B}-vital`, ine);
  assert.equal(cu.status, 201, cu.text);
  noB(cu, 'conditional update', B);
  const cd = await a.del(`/Observation?identifier=http://example.org/obs|ident-${B}-lab`);
  assert.ok(cd.status === 204 || cd.status === 200, cd.text);
  const after = await sys.get(`/Observation/${B}-lab`);
  assert.equal(after.status, 200, 'B still there');
  assert.deepEqual(after.json.status, 'final');
  assert.equal(after.json.meta.versionId, bo.meta.versionId);
  // client-set labels refused; client-set versionId / lastUpdated ignored
  const lab = { ...ine, meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] } };
  assert.equal((await a.post('/Observation', lab)).status, 403);
  const meta = { ...ine, meta: { versionId: '99', lastUpdated: '2001-01-01T00:00:00Z' } };
  const cm = await a.post('/Observation', meta);
  assert.equal(cm.status, 201, cm.text);
  assert.equal(cm.json.meta.versionId, '1');
  assert.notEqual(cm.json.meta.lastUpdated, '2001-01-01T00:00:00Z');
  // a patient cannot write resources outside any compartment
  assert.equal((await a.post('/Practitioner', { resourceType: 'Practitioner' })).status, 403);
  // the audit trail is never writable
  assert.equal((await a.post('/AuditEvent', { resourceType: 'AuditEvent' })).status, 403);
});

test('scopes: resource types, c r u d s separately, granular v2 category', async () => {
  const only = (scope) => kit.as(kit.patient(A, scope));
  const cond = only('patient/Condition.rs');
  assert.equal((await cond.get(`/Condition/${A}-cond`)).status, 200);
  assert.equal((await cond.get(`/Observation/${A}-vital`)).status, 403);
  assert.equal((await cond.get('/Observation')).status, 403);
  const ev = await cond.get(`/Patient/${A}/$everything`);
  assert.equal(ev.status, 200, ev.text);
  assert.ok(ev.json.entry.every((e) => e.resource.resourceType === 'Condition'), '$everything keeps to the scopes');
  assert.equal((await cond.get(`/Patient/${A}/Observation`)).status, 403);
  assert.equal((await cond.get(`/Patient/${A}/Condition`)).status, 200);
  const r = only('patient/Observation.r');
  assert.equal((await r.get(`/Observation/${A}-vital`)).status, 200);
  assert.equal((await r.get('/Observation')).status, 403);
  const s = only('patient/Observation.s');
  assert.equal((await s.get(`/Observation/${A}-vital`)).status, 403);
  assert.equal((await s.get('/Observation')).status, 200);
  const c = only('patient/Observation.c');
  const body = obs(undefined, A, { performer: false });
  delete body.id;
  const made = await c.post('/Observation', body);
  assert.equal(made.status, 201, made.text);
  assert.equal((await c.put(`/Observation/${made.json.id}`, made.json)).status, 403, 'c is not u');
  assert.equal((await c.del(`/Observation/${made.json.id}`)).status, 403, 'c is not d');
  const u = only('patient/Observation.u');
  assert.equal((await u.put(`/Observation/${made.json.id}`, made.json)).status, 200);
  assert.equal((await u.post('/Observation', body)).status, 403);
  const d = only('patient/Observation.d');
  assert.equal((await d.del(`/Observation/${made.json.id}`)).status, 204);
  // granular: laboratory only
  const g = only(`patient/Observation.rs?category=${LAB} patient/Patient.rs`);
  assert.equal((await g.get(`/Observation/${A}-lab`)).status, 200);
  assert.equal((await g.get(`/Observation/${A}-vital`)).status, 404);
  const gs = await g.get('/Observation');
  assert.deepEqual(gs.json.entry.map((e) => e.resource.id), [`${A}-lab`]);
  // a granular scope on a parameter that stores no rows of its own (combo-code: code | component-code)
  const gc = only('patient/Observation.rs?combo-code=http://loinc.org|2345-7 patient/Patient.rs');
  assert.equal((await gc.get(`/Observation/${A}-lab`)).status, 200, 'combo-code scope: the lab code matches');
  assert.equal((await gc.get(`/Observation/${A}-vital`)).status, 404, 'combo-code scope: another code does not');
  assert.deepEqual((await gc.get('/Observation')).json.entry.map((e) => e.resource.id), [`${A}-lab`]);
  const gi = await g.get(`/Patient?_revinclude=Observation:subject`);
  assert.ok(!gi.text.includes(`${A}-vital`), 'a vital-signs Observation is never included');
  const gv = only(`patient/Observation.rs?category=${VITAL} patient/Observation.rs?category=${LAB}`);
  const all = (await only('patient/Observation.rs').get('/Observation?_summary=count')).json.total;
  const vit = (await only(`patient/Observation.rs?category=${VITAL}`).get('/Observation?_summary=count')).json.total;
  assert.ok(vit < all, 'one granular scope narrows');
  assert.equal((await gv.get('/Observation?_summary=count')).json.total, all, 'two granular scopes: their union');
  // v1 scopes
  const v1 = only('patient/*.read');
  assert.equal((await v1.get(`/Observation/${A}-vital`)).status, 200);
  assert.equal((await v1.post('/Observation', body)).status, 403);
});

test('64 concurrent clients with different patients\' tokens only ever see their own patient', async () => {
  const N = 64;
  const pats = Array.from({ length: N }, (_, i) => `${U}-p${i}`);
  const tx = { resourceType: 'Bundle', type: 'transaction', entry: [] };
  for (const pid of pats) {
    tx.entry.push({ resource: { resourceType: 'Patient', id: pid, name: [{ family: `Fam${pid}` }] }, request: { method: 'PUT', url: `Patient/${pid}` } });
    for (const k of [1, 2]) {
      const o = obs(`${pid}-o${k}`, pid);
      tx.entry.push({ resource: o, request: { method: 'PUT', url: `Observation/${o.id}` } });
    }
  }
  const r = await sys.post('/', tx);
  assert.equal(r.status, 200, r.text.slice(0, 500));
  const mine = (pid) => new Set([pid, `${pid}-o1`, `${pid}-o2`]);
  const others = (pid) => pats.filter((p) => p !== pid);
  let checked = 0;
  await pool(pats, N, async (pid) => {
    const c = kit.as(kit.patient(pid));
    const own = mine(pid);
    for (let round = 0; round < 6; round++) {
      for (const p of ['/Observation?_count=50', `/Patient/${pid}/$everything`, `/Patient/${pid}`,
        '/Observation?_include=Observation:subject&_revinclude=Observation:performer', `/Observation/${pid}-o1`]) {
        const res = await c.get(p);
        assert.equal(res.status, 200, `${pid} ${p}: ${res.text.slice(0, 300)}`);
        const ents = res.json.resourceType === 'Bundle' ? (res.json.entry || []).map((e) => e.resource) : [res.json];
        for (const e of ents) {
          if (e.resourceType === 'Practitioner' || e.resourceType === 'OperationOutcome') continue;
          assert.ok(own.has(e.id), `${pid} got ${e.resourceType}/${e.id} from ${p}`);
        }
        for (const o of others(pid)) assert.ok(!new RegExp(`[/"]${o}(-o[12])?"`).test(res.text), `${pid} saw ${o}`);
        checked++;
      }
    }
  });
  assert.equal(checked, N * 6 * 5);
});
