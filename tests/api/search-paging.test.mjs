// Search results: keyset paging stable under concurrent writes, previous links, _total,
// _sort with several keys, _include/_revinclude (:iterate, typed, *, the cap), compartments and
// $everything, GET = POST _search, and never a deleted resource or a stale version.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome } from './lib/server.mjs';

const TAG = 'http://example.org/paging';
let srv;
let c;
const pats = [];     // {id, family, birthDate}
before(async () => {
  srv = await startServer();
  c = client(srv.base);
  for (let i = 0; i < 40; i++) {
    const family = ['Adams', 'Brown', 'Clark', 'Davis'][i % 4];
    const birthDate = `19${50 + (i % 7)}-0${1 + (i % 9)}-1${i % 10}`;
    const r = await c.post('/Patient', { resourceType: 'Patient', meta: { tag: [{ system: TAG, code: 'p' }] },
      name: [{ family, given: [`G${i}`] }], birthDate, gender: i % 2 ? 'male' : 'female' });
    assert.equal(r.status, 201, r.text);
    pats.push({ id: r.json.id, family, birthDate });
  }
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const link = (b, rel) => (b.link || []).find((l) => l.relation === rel)?.url;

test('keyset paging: every match exactly once while resources are created, updated and deleted', async () => {
  for (const sort of ['', '&_sort=family', '&_sort=-birthdate,family', '&_sort=-_lastUpdated']) {
    let url = `/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}&_count=6${sort}`;
    const seen = [];
    let pages = 0;
    const extra = [];
    let deleted = null;
    while (url) {
      assert.ok(pages++ < 50, 'bounded');
      const r = await c.get(url);
      assert.equal(r.status, 200, r.text);
      for (const e of r.json.entry || []) seen.push(e.resource.id);
      if (pages === 2) {
        // concurrent writes between pages: new matches, an update of a non-sort field, a deletion
        for (let k = 0; k < 3; k++) {
          const n = await c.post('/Patient', { resourceType: 'Patient', meta: { tag: [{ system: TAG, code: 'p' }] },
            name: [{ family: 'Aaron' }], birthDate: '2001-01-01' });
          extra.push(n.json.id);
        }
        const upd = (await c.get(`/Patient/${seen[0]}`)).json;
        upd.active = true;
        assert.equal((await c.put(`/Patient/${upd.id}`, upd)).status, 200);
        deleted = pats[pats.length - 1].id;
        if (!seen.includes(deleted)) assert.equal((await c.del(`/Patient/${deleted}`)).status, 204);
        else deleted = null;
      }
      url = link(r.json, 'next');
    }
    assert.equal(new Set(seen).size, seen.length, `${sort}: no resource twice (${seen.length})`);
    for (const p of pats) {
      if (p.id === deleted) continue;
      if (p.gone) continue;
      assert.ok(seen.includes(p.id), `${sort}: ${p.id} missing`);
    }
    if (deleted) {
      assert.ok(!seen.includes(deleted), 'the deleted resource is not returned');
      pats.find((p) => p.id === deleted).gone = true;
    }
    // clean up the extras so the next round starts from the same set
    for (const id of extra) await c.del(`/Patient/${id}`);
  }
});

test('previous links walk back through the same pages', async () => {
  const fwd = [];
  let url = `/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}&_count=7&_sort=family`;
  let last;
  for (let i = 0; url && i < 20; i++) {
    const r = await c.get(url);
    fwd.push((r.json.entry || []).map((e) => e.resource.id));
    last = r.json;
    url = link(r.json, 'next');
  }
  assert.ok(fwd.length >= 3);
  const back = [];
  url = link(last, 'previous');
  for (let i = 0; url && i < 20; i++) {
    const r = await c.get(url);
    assert.equal(r.status, 200, r.text);
    back.unshift((r.json.entry || []).map((e) => e.resource.id));
    url = link(r.json, 'previous');
  }
  assert.deepEqual(back, fwd.slice(0, -1));
  const first = await c.get(`/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}&_count=7&_sort=family`);
  assert.equal(link(first.json, 'previous'), undefined, 'no previous link on the first page');
  assertOutcome(await c.get('/Patient?_cursor=zz'), 400, 'bad cursor');
  assertOutcome(await c.get('/Patient?_sort=family&_cursor=a~5'), 400, 'cursor of another sort');
});

test('_sort with several keys and descending order, ties broken stably', async () => {
  const { entries } = await c.allPages(`/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}&_sort=family,-birthdate&_count=5`);
  const got = entries.map((e) => [e.resource.name[0].family, e.resource.birthDate]);
  const want = [...got].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] > b[1] ? -1 : a[1] < b[1] ? 1 : 0));
  assert.deepEqual(got, want);
  const again = await c.allPages(`/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}&_sort=family,-birthdate&_count=5`);
  assert.deepEqual(again.entries.map((e) => e.resource.id), entries.map((e) => e.resource.id), 'same order twice');
  const g = await c.get(`/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}&_sort=-gender,_id&_count=100`);
  const gs = g.json.entry.map((e) => `${e.resource.gender}/${e.resource.id}`);
  assert.deepEqual(gs, [...gs].sort((a, b) => { const [ga, ia] = a.split('/'); const [gb, ib] = b.split('/'); return ga === gb ? (ia < ib ? -1 : 1) : (ga < gb ? 1 : -1); }));
  assertOutcome(await c.get('/Patient?_sort=nosuch'), 400, 'unknown sort key');
});

test('_total: accurate, none, and a page holding everything knows its total', async () => {
  const q = `/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}`;
  const n = await c.count(q);
  const acc = await c.get(`${q}&_count=3&_total=accurate`);
  assert.equal(acc.json.total, n);
  const none = await c.get(`${q}&_count=3&_total=none`);
  assert.equal(none.json.total, undefined);
  const all = await c.get(`${q}&_count=1000&_total=none`);
  assert.equal(all.json.total, undefined);
  const def = await c.get(`${q}&_count=1000`);
  assert.equal(def.json.total, n);
  assertOutcome(await c.get(`${q}&_total=maybe`), 400, '_total');
  const cap = await c.get(`${q}&_count=5000`);
  assert.equal(cap.status, 200);
  assert.ok(link(cap.json, 'self').includes('_count=1000'), '_count capped at 1000');
});

test('_include, _revinclude (:iterate, typed, *), included entries marked include', async () => {
  const org = (await c.post('/Organization', { resourceType: 'Organization', name: 'Inc Org' })).json;
  const gp = (await c.post('/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Incdoc' }] })).json;
  const p = (await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Incl' }],
    managingOrganization: { reference: `Organization/${org.id}` }, generalPractitioner: [{ reference: `Practitioner/${gp.id}` }] })).json;
  const enc = (await c.post('/Encounter', { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' },
    subject: { reference: `Patient/${p.id}` } })).json;
  const obs = [];
  for (let i = 0; i < 3; i++) {
    obs.push((await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: 'inc-1' }] },
      subject: { reference: `Patient/${p.id}` }, encounter: { reference: `Encounter/${enc.id}` } })).json);
  }
  const modes = (b) => (b.entry || []).map((e) => `${e.search.mode}:${e.resource.resourceType}`).sort();
  let r = await c.get('/Observation?code=inc-1&_include=Observation:subject');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(modes(r.json), ['include:Patient', 'match:Observation', 'match:Observation', 'match:Observation']);
  r = await c.get('/Observation?code=inc-1&_include=Observation:subject:Group');
  assert.deepEqual(modes(r.json), ['match:Observation', 'match:Observation', 'match:Observation'], 'typed target');
  r = await c.get('/Observation?code=inc-1&_include=*');
  assert.deepEqual(modes(r.json), ['include:Encounter', 'include:Patient', 'match:Observation', 'match:Observation', 'match:Observation']);
  r = await c.get('/Observation?code=inc-1&_include=Observation:subject&_include:iterate=Patient:general-practitioner');
  assert.deepEqual(modes(r.json), ['include:Patient', 'include:Practitioner', 'match:Observation', 'match:Observation', 'match:Observation']);
  r = await c.get('/Observation?code=inc-1&_include=Observation:subject&_include=Patient:general-practitioner');
  assert.deepEqual(modes(r.json), ['include:Patient', 'match:Observation', 'match:Observation', 'match:Observation'], 'without :iterate only the matches are sources');
  r = await c.get(`/Patient?_id=${p.id}&_revinclude=Observation:subject`);
  assert.deepEqual(modes(r.json), ['include:Observation', 'include:Observation', 'include:Observation', 'match:Patient']);
  r = await c.get(`/Patient?_id=${p.id}&_revinclude=Encounter:subject&_revinclude:iterate=Observation:encounter&_include=Patient:organization`);
  assert.deepEqual(modes(r.json), ['include:Encounter', 'include:Observation', 'include:Observation', 'include:Observation', 'include:Organization', 'match:Patient']);
  r = await c.get(`/Patient?_id=${p.id}&_revinclude=Observation:*`);
  assert.equal(r.json.entry.length, 4);
  // a deleted target is never included
  assert.equal((await c.del(`/Observation/${obs[0].id}`)).status, 204);
  r = await c.get(`/Patient?_id=${p.id}&_revinclude=Observation:subject`);
  assert.equal(r.json.entry.length, 3);
  assert.ok(!r.text.includes(obs[0].id), 'the deleted Observation is not included');
  assertOutcome(await c.get('/Patient?_revinclude=*'), 400, '_revinclude=*');
  assertOutcome(await c.get('/Patient?_include=Nope:subject'), 400, 'unknown type');
  assertOutcome(await c.get('/Observation?_include=Observation:subject:Practitioner'), 400, 'impossible target');
  r = await c.get('/Observation?code=inc-1&_include=Observation:subject:Patient');
  assert.equal(r.json.entry.length, 3);
});

test('included resources are capped with an OperationOutcome warning entry', async () => {
  const p = (await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Capped' }] })).json;
  const bundle = { resourceType: 'Bundle', type: 'batch', entry: [] };
  for (let i = 0; i < 1005; i++) {
    bundle.entry.push({ request: { method: 'POST', url: 'Observation' }, resource: { resourceType: 'Observation', status: 'final',
      code: { text: 'cap' }, subject: { reference: `Patient/${p.id}` } } });
  }
  const b = await c.post('', bundle, { timeoutMs: 120_000 });
  assert.equal(b.status, 200, b.text.slice(0, 300));
  const r = await c.get(`/Patient?_id=${p.id}&_revinclude=Observation:subject`);
  assert.equal(r.status, 200);
  const inc = r.json.entry.filter((e) => e.search.mode === 'include');
  assert.equal(inc.length, 1000);
  const oo = r.json.entry.filter((e) => e.search.mode === 'outcome');
  assert.equal(oo.length, 1);
  assert.equal(oo[0].resource.resourceType, 'OperationOutcome');
  assert.equal(oo[0].resource.issue[0].severity, 'warning');
});

test('compartment search Patient/[id]/[type] and $everything', async () => {
  const p = (await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Comp' }] })).json;
  const other = (await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Other' }] })).json;
  const mk = (pid, code) => c.post('/Observation', { resourceType: 'Observation', status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${pid}` } });
  for (const code of ['c1', 'c1', 'c2']) assert.equal((await mk(p.id, code)).status, 201);
  assert.equal((await mk(other.id, 'c1')).status, 201);
  const cond = (await c.post('/Condition', { resourceType: 'Condition', subject: { reference: `Patient/${p.id}` },
    code: { text: 'x' } })).json;
  await c.post('/Condition', { resourceType: 'Condition', subject: { reference: `Patient/${other.id}` }, code: { text: 'y' } });
  let r = await c.get(`/Patient/${p.id}/Observation`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.total, 3);
  r = await c.get(`/Patient/${p.id}/Observation?code=c1`);
  assert.equal(r.json.total, 2);
  assert.ok(link(r.json, 'self').includes(`/Patient/${p.id}/Observation?code=c1`));
  r = await c.req('POST', `/Patient/${p.id}/Observation/_search`, { body: 'code=c1', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.json.total, 2, 'POST compartment _search');
  r = await c.get(`/Patient/${p.id}/*?_summary=count`);
  assert.equal(r.json.total, 4, 'every type in the compartment');
  assertOutcome(await c.get(`/Patient/${p.id}/Organization`), 400, 'not in the compartment');
  // $everything: the patient and its compartment, paged
  const all = await c.allPages(`/Patient/${p.id}/$everything?_count=2`);
  const ids = all.entries.map((e) => `${e.resource.resourceType}/${e.resource.id}`);
  assert.equal(ids.length, 5);
  assert.equal(new Set(ids).size, 5);
  assert.ok(ids.includes(`Patient/${p.id}`) && ids.includes(`Condition/${cond.id}`));
  assert.ok(!ids.includes(`Patient/${other.id}`));
  r = await c.get(`/Patient/${p.id}/$everything?_type=Condition`);
  assert.deepEqual(r.json.entry.map((e) => e.resource.resourceType), ['Condition']);
  const since = new Date(Date.now() + 60_000).toISOString();
  r = await c.get(`/Patient/${p.id}/$everything?_since=${encodeURIComponent(since)}`);
  assert.equal(r.json.entry, undefined, '_since in the future: nothing');
  const upd = { ...cond, clinicalStatus: undefined, note: [{ text: 'later' }] };
  // the server's clock: just after the newest resource of the compartment so far
  const newest = Math.max(...all.entries.map((e) => Date.parse(e.resource.meta.lastUpdated)));
  const mid = new Date(newest + 1).toISOString();
  assert.equal((await c.put(`/Condition/${cond.id}`, upd)).status, 200);
  r = await c.get(`/Patient/${p.id}/$everything?_since=${encodeURIComponent(mid)}`);
  assert.deepEqual(r.json.entry.map((e) => e.resource.id), [cond.id]);
  assert.equal(r.json.entry[0].resource.meta.versionId, '2', 'the current version, never a stale one');
  assertOutcome(await c.get('/Patient/nope/$everything'), 404, 'unknown patient');
  assertOutcome(await c.get(`/Patient/${p.id}/$everything?foo=1`), 400, 'unknown parameter');
});

test('GET and POST _search give identical results', async () => {
  for (const q of [`_tag=${encodeURIComponent(`${TAG}|p`)}&_sort=family,_id&_count=9`, 'family=Adams,Brown&gender=male',
    'birthdate=ge1953&_sort=-birthdate,_id', '_count=4&_sort=_id']) {
    const g = await c.get(`/Patient?${q}`);
    const p = await c.req('POST', '/Patient/_search', { body: q, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(g.status, 200);
    assert.equal(p.status, 200);
    assert.deepEqual(p.json.entry?.map((e) => e.resource), g.json.entry?.map((e) => e.resource), q);
    assert.equal(p.json.total, g.json.total);
    assert.deepEqual(p.json.link, g.json.link, `${q}: the same links`);
  }
});

test('a search never returns a deleted resource or a stale version', async () => {
  const p = (await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Stale' }] })).json;
  for (let v = 2; v <= 4; v++) {
    const body = { ...p, name: [{ family: 'Stale', given: [`v${v}`] }] };
    assert.equal((await c.put(`/Patient/${p.id}`, body)).status, 200);
  }
  let r = await c.get('/Patient?family=stale');
  assert.equal(r.json.entry.length, 1);
  assert.equal(r.json.entry[0].resource.meta.versionId, '4');
  assert.equal(r.json.entry[0].resource.name[0].given[0], 'v4');
  assert.equal(await c.count('/Patient?given=v3'), 0, 'the index follows the current version only');
  assert.equal((await c.del(`/Patient/${p.id}`)).status, 204);
  for (const q of ['/Patient?family=stale', `/Patient?_id=${p.id}`, '/Patient?given=v4', `/?_type=Patient&_id=${p.id}`]) {
    r = await c.get(q);
    assert.equal(r.status, 200, r.text);
    assert.ok(!r.text.includes(p.id) || q.includes(p.id) && !(r.json.entry || []).length, `${q}: the deleted resource is not returned`);
  }
});

// Found by the search oracle: a text sort key longer than ~30 bytes (any server id is a 36-byte
// UUID) was cut short in the paging cursor, so page 2 of `_sort=_id` answered 400.
test('paging by a long text key: _sort=_id and a long family name walk every page', async () => {
  for (const sort of ['_id', '-_id', 'family']) {
    const { entries } = await c.allPages(`/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}&_sort=${sort}&_count=3`);
    const ids = entries.map((e) => e.resource.id);
    assert.equal(new Set(ids).size, ids.length, `${sort}: no repeats`);
    assert.equal(ids.length, await c.count(`/Patient?_tag=${encodeURIComponent(`${TAG}|p`)}`), `${sort}: every match`);
    if (sort !== 'family') {
      const want = [...ids].sort();
      if (sort.startsWith('-')) want.reverse();
      assert.deepEqual(ids, want, `${sort}: in order`);
    }
  }
  const long = 'Featherstonehaugh-Cholmondeley-Marjoribanks-Wolstenholme';
  for (let i = 0; i < 5; i++) {
    const r = await c.post('/Patient', { resourceType: 'Patient', meta: { tag: [{ system: TAG, code: 'long' }] }, name: [{ family: `${long}${i}` }] });
    assert.equal(r.status, 201);
  }
  const { entries } = await c.allPages(`/Patient?_tag=${encodeURIComponent(`${TAG}|long`)}&_sort=-family&_count=2`);
  assert.deepEqual(entries.map((e) => e.resource.name[0].family), [4, 3, 2, 1, 0].map((i) => `${long}${i}`));
});
