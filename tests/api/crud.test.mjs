// create, read, vread, update, delete; versioning headers; conditional reads; Prefer; _pretty;
// _summary/_elements; decimal fidelity.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, unique, TEST_SYSTEM } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const UUIDISH = /^[A-Za-z0-9\-.]{1,64}$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function patient(extra = {}) {
  return {
    resourceType: 'Patient',
    identifier: [{ system: TEST_SYSTEM, value: unique('crud') }],
    name: [{ family: 'Hopper', given: ['Grace'] }],
    gender: 'female',
    birthDate: '1906-12-09',
    ...extra,
  };
}

test('create: 201, Location, ETag, Last-Modified, server id and meta; client meta ignored', async () => {
  const t0 = Date.now();
  const body = patient({ id: 'client-chosen-id', meta: { versionId: '42', lastUpdated: '2001-01-01T00:00:00Z', tag: [{ system: 'http://example.org/tags', code: 'keep-me' }] } });
  const r = await c.post('/Patient', body);
  assert.equal(r.status, 201, r.text);
  const res = r.json;
  assert.equal(res.resourceType, 'Patient');
  assert.match(res.id, UUIDISH);
  assert.notEqual(res.id, 'client-chosen-id', 'the server assigns the id on create');
  assert.equal(res.meta.versionId, '1');
  assert.match(res.meta.lastUpdated, INSTANT);
  const lu = Date.parse(res.meta.lastUpdated);
  assert.ok(lu >= t0 - 5000 && lu <= Date.now() + 5000, `lastUpdated ${res.meta.lastUpdated} is now`);
  assert.deepEqual(res.meta.tag, body.meta.tag, 'other meta content kept');
  assert.equal(r.headers.get('location'), `${srv.base}/Patient/${res.id}/_history/1`);
  assert.equal(r.headers.get('etag'), 'W/"1"');
  const lm = r.headers.get('last-modified');
  assert.match(lm, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  assert.equal(Math.floor(Date.parse(lm) / 1000), Math.floor(lu / 1000));
  assert.match(r.headers.get('content-type'), /^application\/fhir\+json/);
  assert.deepEqual(res.name, body.name);
});

test('read: 200, ETag, byte-identical body on repeated reads (and equal to the create response)', async () => {
  const cr = await c.post('/Patient', patient());
  const id = cr.json.id;
  const a = await c.get(`/Patient/${id}`);
  const b = await c.get(`/Patient/${id}`);
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('etag'), 'W/"1"');
  assert.equal(a.headers.get('last-modified'), cr.headers.get('last-modified'));
  assert.equal(a.text, b.text);
  assert.equal(a.text, cr.text);
  // HEAD answers like GET without a body
  const h = await c.req('HEAD', `/Patient/${id}`);
  assert.equal(h.status, 200);
  assert.equal(h.text, '');
  assert.equal(h.headers.get('etag'), 'W/"1"');
});

test('read of an unknown id -> 404 OperationOutcome', async () => {
  assertOutcome(await c.get('/Patient/does-not-exist'), 404, 'read unknown');
  assertOutcome(await c.get('/Patient/does-not-exist/_history/1'), 404, 'vread unknown');
});

test('update: 200 and version 2; vread of both versions; Content-Location', async () => {
  const cr = await c.post('/Patient', patient());
  const id = cr.json.id;
  const upd = { ...cr.json, birthDate: '1906-12-10', meta: { versionId: '77', lastUpdated: '1999-01-01T00:00:00Z' } };
  const r = await c.put(`/Patient/${id}`, upd);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.meta.versionId, '2');
  assert.equal(r.json.birthDate, '1906-12-10');
  assert.ok(Date.parse(r.json.meta.lastUpdated) >= Date.parse(cr.json.meta.lastUpdated));
  assert.notEqual(r.json.meta.lastUpdated, '1999-01-01T00:00:00Z');
  assert.equal(r.headers.get('etag'), 'W/"2"');
  assert.equal(r.headers.get('content-location'), `${srv.base}/Patient/${id}/_history/2`);
  const v1 = await c.get(`/Patient/${id}/_history/1`);
  assert.equal(v1.status, 200);
  assert.equal(v1.text, cr.text, 'vread 1 is the original bytes');
  assert.equal(v1.headers.get('etag'), 'W/"1"');
  const v2 = await c.get(`/Patient/${id}/_history/2`);
  assert.equal(v2.status, 200);
  assert.equal(v2.text, r.text);
  assertOutcome(await c.get(`/Patient/${id}/_history/3`), 404, 'vread of a future version');
  assertOutcome(await c.get(`/Patient/${id}/_history/abc`), 400, 'vread of a non-numeric version');
  const cur = await c.get(`/Patient/${id}`);
  assert.equal(cur.text, r.text);
});

test('update with no change still makes a new version', async () => {
  const cr = await c.post('/Patient', patient());
  const r = await c.put(`/Patient/${cr.json.id}`, cr.json);
  assert.equal(r.status, 200);
  assert.equal(r.json.meta.versionId, '2');
});

test('create-on-update with a client id -> 201 with Location; then 200', async () => {
  const id = unique('client').replace(/[^A-Za-z0-9\-.]/g, '').slice(0, 64);
  const r = await c.put(`/Patient/${id}`, patient({ id }));
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.id, id);
  assert.equal(r.json.meta.versionId, '1');
  assert.equal(r.headers.get('location'), `${srv.base}/Patient/${id}/_history/1`);
  assert.equal(r.headers.get('etag'), 'W/"1"');
  const again = await c.put(`/Patient/${id}`, patient({ id }));
  assert.equal(again.status, 200);
  assert.equal(again.json.meta.versionId, '2');
});

test('update: body id must match the URL id; a body without id is refused', async () => {
  const cr = await c.post('/Patient', patient());
  const id = cr.json.id;
  const before_ = await c.historyTotal();
  assertOutcome(await c.put(`/Patient/${id}`, { ...cr.json, id: 'other' }), 400, 'id mismatch');
  const { id: _drop, ...noId } = cr.json;
  assertOutcome(await c.put(`/Patient/${id}`, noId), 400, 'no id');
  assert.equal(await c.historyTotal(), before_);
});

test('If-Match: the right version -> 200, a wrong one -> 412 and nothing written', async () => {
  const cr = await c.post('/Patient', patient());
  const id = cr.json.id;
  const ok = await c.put(`/Patient/${id}`, { ...cr.json, gender: 'other' }, { headers: { 'If-Match': 'W/"1"' } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.meta.versionId, '2');
  const stale = await c.put(`/Patient/${id}`, { ...cr.json, gender: 'male' }, { headers: { 'If-Match': 'W/"1"' } });
  assertOutcome(stale, 412, 'stale If-Match');
  const cur = await c.get(`/Patient/${id}`);
  assert.equal(cur.json.meta.versionId, '2');
  assert.equal(cur.json.gender, 'other');
  // delete with a wrong If-Match is refused too
  assertOutcome(await c.del(`/Patient/${id}`, { headers: { 'If-Match': 'W/"7"' } }), 412, 'delete stale If-Match');
  assert.equal((await c.get(`/Patient/${id}`)).status, 200);
  assertOutcome(await c.put(`/Patient/${id}`, cr.json, { headers: { 'If-Match': 'garbage' } }), 400, 'malformed If-Match');
});

test('If-None-Match and If-Modified-Since -> 304 without a body', async () => {
  const cr = await c.post('/Patient', patient());
  const id = cr.json.id;
  const nm = await c.get(`/Patient/${id}`, { headers: { 'If-None-Match': 'W/"1"' } });
  assert.equal(nm.status, 304);
  assert.equal(nm.text, '');
  assert.equal(nm.headers.get('etag'), 'W/"1"');
  const other = await c.get(`/Patient/${id}`, { headers: { 'If-None-Match': 'W/"2"' } });
  assert.equal(other.status, 200);
  const lm = cr.headers.get('last-modified');
  const ims = await c.get(`/Patient/${id}`, { headers: { 'If-Modified-Since': lm } });
  assert.equal(ims.status, 304);
  assert.equal(ims.text, '');
  const later = new Date(Date.parse(lm) + 3600_000).toUTCString();
  assert.equal((await c.get(`/Patient/${id}`, { headers: { 'If-Modified-Since': later } })).status, 304);
  const earlier = new Date(Date.parse(lm) - 3600_000).toUTCString();
  const mod = await c.get(`/Patient/${id}`, { headers: { 'If-Modified-Since': earlier } });
  assert.equal(mod.status, 200);
  assert.equal(mod.text, cr.text);
});

test('delete: 204; read -> 410; vread of old versions still 200; history keeps every version', async () => {
  const cr = await c.post('/Patient', patient());
  const id = cr.json.id;
  const up = await c.put(`/Patient/${id}`, { ...cr.json, gender: 'unknown' });
  assert.equal(up.status, 200);
  const d = await c.del(`/Patient/${id}`);
  assert.equal(d.status, 204);
  assert.equal(d.text, '');
  const gone = await c.get(`/Patient/${id}`);
  assertOutcome(gone, 410, 'read after delete');
  assert.equal((await c.get(`/Patient/${id}/_history/1`)).text, cr.text);
  assert.equal((await c.get(`/Patient/${id}/_history/2`)).text, up.text);
  const v3 = await c.get(`/Patient/${id}/_history/3`);
  assertOutcome(v3, 410, 'vread of the deletion version');
  const h = await c.get(`/Patient/${id}/_history`);
  assert.equal(h.status, 200);
  assert.equal(h.json.type, 'history');
  assert.equal(h.json.total, 3);
  assert.equal(h.json.entry.length, 3);
  // newest first: the deletion, then version 2, then version 1
  assert.equal(h.json.entry[0].request.method, 'DELETE');
  assert.equal(h.json.entry[0].resource, undefined);
  assert.equal(h.json.entry[1].resource.meta.versionId, '2');
  assert.equal(h.json.entry[2].resource.meta.versionId, '1');
  assert.equal(h.json.entry[2].request.method, 'POST');
  // deleted resources do not match searches
  const ident = cr.json.identifier[0];
  assert.equal(await c.count(`/Patient?identifier=${encodeURIComponent(`${ident.system}|${ident.value}`)}`), 0);
  // deleting again is idempotent; a resource can be re-created by update after deletion
  assert.equal((await c.del(`/Patient/${id}`)).status, 204);
  const again = await c.put(`/Patient/${id}`, { ...cr.json });
  assert.equal(again.status, 201, again.text);
  assert.equal(again.json.meta.versionId, '4');
  assert.equal((await c.get(`/Patient/${id}`)).status, 200);
});

test('delete of a never-existing resource -> 404', async () => {
  assertOutcome(await c.del('/Patient/never-was-here'), 404, 'delete unknown');
});

test('Prefer: return=minimal (empty body, headers kept) and return=OperationOutcome', async () => {
  const min = await c.post('/Patient', patient(), { headers: { Prefer: 'return=minimal' } });
  assert.equal(min.status, 201);
  assert.equal(min.text, '');
  const loc = min.headers.get('location');
  assert.match(loc, /\/Patient\/[^/]+\/_history\/1$/);
  assert.equal(min.headers.get('etag'), 'W/"1"');
  const id = loc.split('/').at(-3);
  const read = await c.get(`/Patient/${id}`);
  assert.equal(read.status, 200);
  const oo = await c.put(`/Patient/${id}`, read.json, { headers: { Prefer: 'return=OperationOutcome' } });
  assert.equal(oo.status, 200);
  assert.equal(oo.json.resourceType, 'OperationOutcome');
  assert.ok(oo.json.issue.every((i) => i.severity === 'information' || i.severity === 'warning'));
  assert.equal(oo.headers.get('etag'), 'W/"2"');
  const rep = await c.put(`/Patient/${id}`, read.json, { headers: { Prefer: 'return=representation' } });
  assert.equal(rep.json.resourceType, 'Patient');
  assert.equal(rep.json.meta.versionId, '3');
  const minUp = await c.put(`/Patient/${id}`, read.json, { headers: { Prefer: 'return=minimal' } });
  assert.equal(minUp.status, 200);
  assert.equal(minUp.text, '');
});

test('_pretty=true on read is indented and otherwise the same resource', async () => {
  const cr = await c.post('/Patient', patient());
  const p = await c.get(`/Patient/${cr.json.id}?_pretty=true`);
  assert.equal(p.status, 200);
  assert.ok(p.text.includes('\n  "'), 'indented');
  assert.deepEqual(p.json, cr.json);
  const f = await c.get(`/Patient/${cr.json.id}?_pretty=false`);
  assert.equal(f.text, cr.text);
});

const SUBSETTED = (res) => (res.meta?.tag || []).some((t) => t.code === 'SUBSETTED'
  && t.system === 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue');

test('_summary=true and _elements on read mark SUBSETTED and keep the right elements', async () => {
  const cr = await c.post('/Patient', patient({
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Grace Hopper</div>' },
    contact: [{ name: { family: 'Hopper', given: ['Vincent'] } }],
    maritalStatus: { text: 'Married' },
  }));
  const id = cr.json.id;
  const s = await c.get(`/Patient/${id}?_summary=true`);
  assert.equal(s.status, 200, s.text);
  assert.ok(SUBSETTED(s.json), 'SUBSETTED tag');
  assert.equal(s.json.id, id);
  assert.deepEqual(s.json.name, cr.json.name, 'name is a summary element');
  assert.equal(s.json.birthDate, cr.json.birthDate);
  assert.equal(s.json.gender, cr.json.gender);
  assert.equal(s.json.text, undefined, 'text is not in the summary');
  assert.equal(s.json.contact, undefined, 'contact is not in the summary');
  assert.equal(s.json.maritalStatus, undefined, 'maritalStatus is not in the summary');

  const e = await c.get(`/Patient/${id}?_elements=name`);
  assert.equal(e.status, 200, e.text);
  assert.ok(SUBSETTED(e.json));
  assert.deepEqual(Object.keys(e.json).sort(), ['id', 'meta', 'name', 'resourceType']);
  assert.deepEqual(e.json.name, cr.json.name);

  const e2 = await c.get(`/Patient/${id}?_elements=name,birthDate`);
  assert.deepEqual(Object.keys(e2.json).sort(), ['birthDate', 'id', 'meta', 'name', 'resourceType']);

  const t = await c.get(`/Patient/${id}?_summary=text`);
  assert.equal(t.status, 200);
  assert.ok(t.json.text);
  assert.equal(t.json.name, undefined);
  const d = await c.get(`/Patient/${id}?_summary=data`);
  assert.equal(d.json.text, undefined);
  assert.ok(d.json.contact);
  const f = await c.get(`/Patient/${id}?_summary=false`);
  assert.equal(f.text, cr.text);
  assertOutcome(await c.get(`/Patient/${id}?_summary=bogus`), 400, '_summary=bogus');
  // the stored resource is untouched
  assert.equal((await c.get(`/Patient/${id}`)).text, cr.text);
});

test('decimal fidelity: 1.50, 1E-17 and 10000000000000000 come back byte-identical', async () => {
  const raw = '{"resourceType":"Observation","status":"final",'
    + '"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},'
    + '"extension":[{"url":"http://example.org/fhir/StructureDefinition/tiny","valueDecimal":1E-17},'
    + '{"url":"http://example.org/fhir/StructureDefinition/huge","valueDecimal":10000000000000000},'
    + '{"url":"http://example.org/fhir/StructureDefinition/neg","valueDecimal":-0.000100}],'
    + '"valueQuantity":{"value":1.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}';
  const cr = await c.post('/Observation', raw);
  assert.equal(cr.status, 201, cr.text);
  const id = cr.json.id;
  for (const [what, r] of [['create response', cr], ['read', await c.get(`/Observation/${id}`)],
    ['vread', await c.get(`/Observation/${id}/_history/1`)],
    ['pretty read', await c.get(`/Observation/${id}?_pretty=true`)],
    ['search', await c.get(`/Observation?_id=${id}`)],
    ['history', await c.get(`/Observation/${id}/_history`)]]) {
    assert.equal(r.status, what === 'create response' ? 201 : 200, `${what}: ${r.text.slice(0, 300)}`);
    const t = r.text.replace(/\s+/g, '');
    assert.ok(t.includes('"value":1.50,'), `${what} keeps 1.50: ${r.text.slice(0, 600)}`);
    assert.ok(t.includes('"valueDecimal":1E-17}'), `${what} keeps 1E-17`);
    assert.ok(t.includes('"valueDecimal":10000000000000000}'), `${what} keeps 10000000000000000`);
    assert.ok(t.includes('"valueDecimal":-0.000100}'), `${what} keeps -0.000100`);
  }
  // an update through the JSON DOM keeps them too
  const body = (await c.get(`/Observation/${id}`)).text.replace('"status":"final"', '"status":"amended"');
  const up = await c.put(`/Observation/${id}`, body);
  assert.equal(up.status, 200, up.text);
  assert.ok(up.text.includes('"value":1.50,') && up.text.includes('1E-17') && up.text.includes('10000000000000000'));
});

test('JSON media types with parameters are accepted for writes', async () => {
  for (const ct of ['application/fhir+json; charset=utf-8', 'application/json', 'application/fhir+json;fhirVersion=4.0']) {
    const r = await c.post('/Patient', JSON.stringify(patient()), { headers: { 'Content-Type': ct } });
    assert.equal(r.status, 201, `${ct}: ${r.text.slice(0, 200)}`);
  }
});

test('unicode text survives byte for byte', async () => {
  const name = 'Siân Ní Bhriain 李小龙 \u{1F600} "quoted" \\ back';
  const cr = await c.post('/Patient', patient({ name: [{ text: name }] }));
  assert.equal(cr.status, 201, cr.text);
  const r = await c.get(`/Patient/${cr.json.id}`);
  assert.equal(r.json.name[0].text, name);
});
