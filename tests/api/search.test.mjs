// The basic search the core relies on: identifier tokens, _summary=count, _count paging, _id,
// POST _search, system search.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, TEST_SYSTEM } from './lib/server.mjs';

let srv;
let c;
const ids = [];
before(async () => {
  srv = await startServer();
  c = client(srv.base);
  for (let i = 0; i < 25; i++) {
    const r = await c.post('/Patient', { resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value: `s${i}` },
      { system: 'http://example.org/group', value: 'all' }], name: [{ family: i % 2 ? 'Odd' : 'Even' }] });
    assert.equal(r.status, 201, r.text);
    ids.push(r.json.id);
  }
  await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${ids[0]}` } });
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

test('Patient?identifier=system|value finds exactly that patient', async () => {
  const r = await c.get(`/Patient?identifier=${encodeURIComponent(`${TEST_SYSTEM}|s7`)}`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.resourceType, 'Bundle');
  assert.equal(r.json.type, 'searchset');
  assert.equal(r.json.total, 1);
  assert.equal(r.json.entry.length, 1);
  assert.equal(r.json.entry[0].resource.id, ids[7]);
  assert.equal(r.json.entry[0].fullUrl, `${srv.base}/Patient/${ids[7]}`);
  assert.equal(r.json.entry[0].search.mode, 'match');
  // code only, and system only
  assert.equal(await c.count('/Patient?identifier=s7'), 1);
  assert.equal(await c.count(`/Patient?identifier=${encodeURIComponent('http://example.org/group|')}`), 25);
  assert.equal(await c.count(`/Patient?identifier=${encodeURIComponent(`${TEST_SYSTEM}|nope`)}`), 0);
  // the body of a search entry is the stored resource, byte for byte
  const read = await c.get(`/Patient/${ids[7]}`);
  assert.ok(r.text.includes(read.text));
});

test('_summary=count: a total and no entries', async () => {
  const r = await c.get('/Patient?_summary=count');
  assert.equal(r.status, 200);
  assert.equal(r.json.total, 25);
  assert.equal(r.json.entry, undefined);
  assert.equal(await c.count('/Observation'), 1);
  assert.equal(await c.count('/Encounter'), 0);
});

test('_count paging: next links walk every match exactly once', async () => {
  for (const n of [1, 7, 10, 25, 100]) {
    const { entries, pages } = await c.allPages(`/Patient?identifier=${encodeURIComponent('http://example.org/group|all')}&_count=${n}`);
    const got = entries.map((e) => e.resource.id);
    assert.equal(new Set(got).size, got.length, `_count=${n}: no duplicates`);
    assert.deepEqual([...got].sort(), [...ids].sort(), `_count=${n}: every match`);
    assert.equal(pages, Math.max(1, Math.ceil(25 / n)), `_count=${n}: pages`);
  }
  const first = await c.get('/Patient?_count=10');
  assert.equal(first.json.entry.length, 10);
  assert.equal(first.json.total, 25);
  const rel = first.json.link.map((l) => l.relation);
  assert.ok(rel.includes('self') && rel.includes('next'));
});

test('_id and name search; _sort by _id is stable', async () => {
  assert.equal(await c.count(`/Patient?_id=${ids[3]}`), 1);
  assert.equal(await c.count(`/Patient?_id=${ids[3]},${ids[4]}`), 2);
  assert.equal(await c.count('/Patient?name=odd'), 12);
  assert.equal(await c.count('/Patient?family=Even'), 13);
  // phonetic selects the same elements as name: searched through name's rows (not stored twice)
  assert.equal(await c.count('/Patient?phonetic=odd'), 12);
  assert.equal(await c.count('/Patient?phonetic:missing=true'), 0);
  const byPhonetic = await c.get('/Patient?_sort=phonetic,_id&_count=100');
  const byName = await c.get('/Patient?_sort=name,_id&_count=100');
  assert.deepEqual(byPhonetic.json.entry.map((e) => e.resource.id), byName.json.entry.map((e) => e.resource.id));
});

test('reference search', async () => {
  assert.equal(await c.count(`/Observation?subject=Patient/${ids[0]}`), 1);
  assert.equal(await c.count(`/Observation?subject=${ids[0]}`), 1);
  assert.equal(await c.count(`/Observation?patient=${ids[0]}`), 1);
  assert.equal(await c.count(`/Observation?subject=Patient/${ids[1]}`), 0);
});

test('POST _search with a form body gives the same result as GET', async () => {
  const body = `identifier=${encodeURIComponent(`${TEST_SYSTEM}|s3`)}`;
  const r = await c.req('POST', '/Patient/_search', { body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.total, 1);
  assert.equal(r.json.entry[0].resource.id, ids[3]);
});

test('POST /_search (system level) reads the form body and the URL parameters together', async () => {
  const r = await c.req('POST', '/_search?_summary=count', { body: '_type=Observation',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.total, 1);
  assert.equal(r.json.entry, undefined, 'the URL\'s _summary=count applies: no entries');
});

test('system search with _type', async () => {
  const r = await c.get('/?_type=Observation&_summary=count');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.total, 1);
});

test('deleted resources drop out of searches', async () => {
  const id = ids.pop();
  assert.equal((await c.del(`/Patient/${id}`)).status, 204);
  assert.equal(await c.count('/Patient'), 24);
  assert.equal(await c.count(`/Patient?_id=${id}`), 0);
});

test('a malformed _include is refused (not silently ignored)', async () => {
  assertOutcome(await c.get('/Observation?_include=Observation:nosuch'), 400, '_include');
  assertOutcome(await c.get('/Observation?_include=Observation:code'), 400, '_include on a token');
});

// name and address store no rows for the parts that family, given, address-city, -state,
// -postalcode and -country store (docs/search.md, "Parts"): they search those rows too.
test('name and address match every part, their part parameters only their own', async () => {
  const p1 = await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Partsmith', given: ['Annora', 'Rosalind'],
    prefix: ['Dr'], suffix: ['PhD'], text: 'Dr Annora Partsmith' }], address: [{ line: ['Quillstreet House'], city: 'Leedsbury',
    district: 'Westmarch', state: 'Yorkshireshire', postalCode: 'LQ1 1AA', country: 'Narnia', text: 'Quillstreet House, Leedsbury' }] });
  assert.equal(p1.status, 201, p1.text);
  const p2 = await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Rosalind' }], address: [{ city: 'Quillstreet' }] });
  assert.equal(p2.status, 201, p2.text);
  const a = p1.json.id, b = p2.json.id;
  const found = async (q) => {
    const { entries } = await c.allPages(`/Patient?${q}`);
    return entries.map((e) => e.resource.id).sort();
  };
  const both = [a, b].sort();
  assert.deepEqual(await found('name=partsmith'), [a]);        // family
  assert.deepEqual(await found('name=annora'), [a]);           // given
  assert.deepEqual(await found('name=rosalind'), both);        // a's given, b's family: each once
  assert.deepEqual(await found('name=phd'), [a]);              // suffix: name's own row
  assert.deepEqual(await found(`name:exact=${encodeURIComponent('Dr Annora Partsmith')}`), [a]); // text
  assert.deepEqual(await found('name:contains=osalin'), both);
  assert.deepEqual(await found('family=rosalind'), [b]);
  assert.deepEqual(await found('given=rosalind'), [a]);
  assert.deepEqual(await found('phonetic=annora'), [a]);
  assert.deepEqual(await found(`name:missing=true&_id=${a},${b}`), []);
  assert.deepEqual(await found(`name:missing=false&_id=${a},${b}`), both);
  const sorted = await c.get(`/Patient?_id=${a},${b}&_sort=name`);
  assert.deepEqual(sorted.json.entry.map((e) => e.resource.id), [a, b]); // annora before rosalind
  assert.deepEqual(await found('address=quillstreet'), both);  // a's line, b's city
  assert.deepEqual(await found('address=leedsbury'), [a]);
  assert.deepEqual(await found('address=westmarch'), [a]);     // district: address's own row
  assert.deepEqual(await found('address=yorkshireshire'), [a]);
  assert.deepEqual(await found('address=narnia'), [a]);
  assert.deepEqual(await found(`address=${encodeURIComponent('LQ1 1AA')}`), [a]);
  assert.deepEqual(await found('address-city=quillstreet'), [b]);
  assert.deepEqual(await found('address-city=leedsbury'), [a]);
  const o = await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'parts' },
    subject: { reference: `Patient/${a}` } });
  assert.equal(o.status, 201, o.text);
  assert.equal(await c.count('/Observation?subject.name=annora'), 1);
  const pr = await c.post('/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Quorbin', given: ['Ilse'] }] });
  assert.equal(pr.status, 201, pr.text);
  assert.equal(await c.count('/Practitioner?name=ilse'), 1);
  assert.equal(await c.count('/Practitioner?name=quorbin'), 1);
});
