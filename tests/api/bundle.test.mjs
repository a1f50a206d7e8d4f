// batch and transaction Bundles: all-or-nothing, urn:uuid rewriting, conditional references,
// duplicate targets, processing order, independent batch entries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, client, assertOutcome, unique, TEST_SYSTEM } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const tx = (entry, type = 'transaction') => ({ resourceType: 'Bundle', type, entry });
const q = (system, value) => `identifier=${encodeURIComponent(`${system}|${value}`)}`;
const pat = (value, extra = {}) => ({ resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value }], ...extra });
const obs = (subject, extra = {}) => ({ resourceType: 'Observation', status: 'final', code: { text: 'test' },
  subject: { reference: subject }, ...extra });
const idOf = (location) => location.split('/')[1];

test('transaction: urn:uuid fullUrls are rewritten to the assigned ids in every reference', async () => {
  const pu = `urn:uuid:${randomUUID()}`;
  const ou = `urn:uuid:${randomUUID()}`;
  const v = unique('tx');
  const r = await c.post('', tx([
    { fullUrl: ou, resource: obs(pu, { hasMember: [{ reference: pu }], focus: [{ reference: pu }] }), request: { method: 'POST', url: 'Observation' } },
    { fullUrl: pu, resource: pat(v, { link: [{ other: { reference: pu }, type: 'seealso' }] }), request: { method: 'POST', url: 'Patient' } },
    { resource: { resourceType: 'DiagnosticReport', status: 'final', code: { text: 'r' }, subject: { reference: pu },
      result: [{ reference: ou }] }, request: { method: 'POST', url: 'DiagnosticReport' } },
  ]));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.resourceType, 'Bundle');
  assert.equal(r.json.type, 'transaction-response');
  assert.equal(r.json.entry.length, 3);
  for (const e of r.json.entry) {
    assert.match(e.response.status, /^201/);
    assert.match(e.response.location, /^[A-Za-z]+\/[A-Za-z0-9\-.]+\/_history\/1$/);
    assert.equal(e.response.etag, 'W/"1"');
  }
  const oid = idOf(r.json.entry[0].response.location);
  const pid = idOf(r.json.entry[1].response.location);
  const did = idOf(r.json.entry[2].response.location);
  assert.ok(r.json.entry[1].response.location.startsWith('Patient/'));
  const o = (await c.get(`/Observation/${oid}`)).json;
  assert.equal(o.subject.reference, `Patient/${pid}`);
  assert.equal(o.hasMember[0].reference, `Patient/${pid}`);
  assert.equal(o.focus[0].reference, `Patient/${pid}`);
  const p = await c.get(`/Patient/${pid}`);
  assert.equal(p.json.link[0].other.reference, `Patient/${pid}`, 'self reference rewritten');
  const d = (await c.get(`/DiagnosticReport/${did}`)).json;
  assert.equal(d.subject.reference, `Patient/${pid}`);
  assert.equal(d.result[0].reference, `Observation/${oid}`);
  for (const t of [o, p.json, d]) assert.ok(!JSON.stringify(t).includes('urn:uuid:'));
  // the stored bodies carry the commit's time (their JSON is written before the writer, the time
  // filled in on it): meta.lastUpdated is the entry's lastModified, and now
  for (const [t, e] of [[o, r.json.entry[0]], [p.json, r.json.entry[1]], [d, r.json.entry[2]]]) {
    assert.equal(t.meta.versionId, '1');
    assert.equal(t.meta.lastUpdated, e.response.lastModified);
    assert.ok(Math.abs(Date.parse(t.meta.lastUpdated) - Date.now()) < 60_000, t.meta.lastUpdated);
  }
  // the references are indexed: search by subject finds the Observation
  const s = await c.get(`/Observation?subject=Patient/${pid}`);
  assert.equal(s.status, 200, s.text);
  assert.equal(s.json.total, 1);
});

test('transaction: absolute fullUrls, and relative references resolved against them, are rewritten', async () => {
  const r = await c.post('', tx([
    { fullUrl: 'http://example.org/fhir/Patient/123', resource: pat(unique('abs'), { id: '123' }), request: { method: 'POST', url: 'Patient' } },
    { fullUrl: 'http://example.org/fhir/Observation/9', resource: obs('Patient/123', { focus: [{ reference: 'http://example.org/fhir/Patient/123' }] }),
      request: { method: 'POST', url: 'Observation' } },
    // an entry without an absolute fullUrl: "Patient/123" is a reference to the server's own Patient/123
    { resource: obs('Patient/123'), request: { method: 'POST', url: 'Observation' } },
  ]));
  assert.equal(r.status, 200, r.text);
  const pid = idOf(r.json.entry[0].response.location);
  assert.notEqual(pid, '123', 'POST assigns a new id');
  const o = (await c.get(`/Observation/${idOf(r.json.entry[1].response.location)}`)).json;
  assert.equal(o.focus[0].reference, `Patient/${pid}`, 'absolute reference to the fullUrl');
  assert.equal(o.subject.reference, `Patient/${pid}`, 'relative reference resolved against the entry fullUrl base');
  const o2 = (await c.get(`/Observation/${idOf(r.json.entry[2].response.location)}`)).json;
  assert.equal(o2.subject.reference, 'Patient/123', 'relative to the server base: left alone');
});

test('transaction: Prefer return=representation includes the resources', async () => {
  const pu = `urn:uuid:${randomUUID()}`;
  const r = await c.post('', tx([{ fullUrl: pu, resource: pat(unique('rep')), request: { method: 'POST', url: 'Patient' } }]),
    { headers: { Prefer: 'return=representation' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.entry[0].resource.resourceType, 'Patient');
  assert.equal(r.json.entry[0].resource.meta.versionId, '1');
});

test('transaction: a conditional reference Patient?identifier=sys|val is resolved', async () => {
  const v = unique('cref');
  const p = await c.post('/Patient', pat(v));
  const r = await c.post('', tx([
    { resource: obs(`Patient?${q(TEST_SYSTEM, v)}`), request: { method: 'POST', url: 'Observation' } },
  ]));
  assert.equal(r.status, 200, r.text);
  const o = await c.get(`/Observation/${idOf(r.json.entry[0].response.location)}`);
  assert.equal(o.json.subject.reference, `Patient/${p.json.id}`);
  // no match or several matches: the transaction fails, nothing stored
  const before_ = await c.historyTotal();
  const none = await c.post('', tx([{ resource: obs(`Patient?${q(TEST_SYSTEM, 'no-such-value')}`), request: { method: 'POST', url: 'Observation' } }]));
  assertOutcome(none, undefined, 'conditional reference without a match');
  await c.post('/Patient', pat(v));
  const h1 = await c.historyTotal();
  const two = await c.post('', tx([{ resource: obs(`Patient?${q(TEST_SYSTEM, v)}`), request: { method: 'POST', url: 'Observation' } }]));
  assertOutcome(two, undefined, 'conditional reference with two matches');
  assert.equal(await c.historyTotal(), h1);
  assert.equal(h1, before_ + 1);
});

test('transaction: conditional create (ifNoneExist) inside a transaction, referenced by urn:uuid', async () => {
  const v = unique('txine');
  const existing = await c.post('/Patient', pat(v));
  const pu = `urn:uuid:${randomUUID()}`;
  const r = await c.post('', tx([
    { fullUrl: pu, resource: pat(v), request: { method: 'POST', url: 'Patient', ifNoneExist: q(TEST_SYSTEM, v) } },
    { resource: obs(pu), request: { method: 'POST', url: 'Observation' } },
  ]));
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.entry[0].response.status, /^200/);
  const o = await c.get(`/Observation/${idOf(r.json.entry[1].response.location)}`);
  assert.equal(o.json.subject.reference, `Patient/${existing.json.id}`);
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 1);
});

test('transaction is all-or-nothing: one invalid entry -> 4xx and none stored', async () => {
  const v = unique('aon');
  const before_ = await c.historyTotal();
  const pu = `urn:uuid:${randomUUID()}`;
  const cases = [
    // invalid resource (bad date) in the last entry
    [{ fullUrl: pu, resource: pat(v), request: { method: 'POST', url: 'Patient' } },
      { resource: obs(pu), request: { method: 'POST', url: 'Observation' } },
      { resource: pat(v, { birthDate: '2021-02-30' }), request: { method: 'POST', url: 'Patient' } }],
    // a failing If-Match on an update
    [{ resource: pat(v), request: { method: 'POST', url: 'Patient' } },
      { resource: pat(v, { id: 'aon-target' }), request: { method: 'PUT', url: 'Patient/aon-target', ifMatch: 'W/"3"' } }],
    // an unknown element
    [{ resource: pat(v), request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Patient', nonsense: true }, request: { method: 'POST', url: 'Patient' } }],
    // a read of something that does not exist
    [{ resource: pat(v), request: { method: 'POST', url: 'Patient' } },
      { request: { method: 'GET', url: 'Patient/not-there-at-all' } }],
    // a reference to a urn:uuid that is not in the bundle
    [{ resource: obs(`urn:uuid:${randomUUID()}`), request: { method: 'POST', url: 'Observation' } }],
    // an invalid NHS number
    [{ resource: pat(v), request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Patient', identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '1234567890' }] }, request: { method: 'POST', url: 'Patient' } }],
    // a delete of something with a stale version
    [{ resource: pat(v), request: { method: 'POST', url: 'Patient' } },
      { request: { method: 'DELETE', url: 'Patient/nothing-here', ifMatch: 'W/"1"' } }],
  ];
  for (const entries of cases) {
    const r = await c.post('', tx(entries));
    assertOutcome(r, undefined, JSON.stringify(entries).slice(0, 200));
  }
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 0);
  assert.equal(await c.historyTotal(), before_, 'no version stored by any failed transaction');
});

test('transaction: an error names the failing entry', async () => {
  const r = await c.post('', tx([
    { resource: pat('ok'), request: { method: 'POST', url: 'Patient' } },
    { resource: pat('bad', { birthDate: 'yesterday' }), request: { method: 'POST', url: 'Patient' } },
  ]));
  const oo = assertOutcome(r, 400, 'bad entry');
  const where = JSON.stringify(oo.issue);
  assert.ok(where.includes('Bundle.entry[1]'), `the outcome names Bundle.entry[1]: ${where}`);
});

test('transaction: two entries on the same resource are rejected', async () => {
  const before_ = await c.historyTotal();
  const id = `dup-${Date.now()}`;
  const r = await c.post('', tx([
    { resource: pat('a', { id }), request: { method: 'PUT', url: `Patient/${id}` } },
    { resource: pat('b', { id }), request: { method: 'PUT', url: `Patient/${id}` } },
  ]));
  assertOutcome(r, undefined, 'two PUTs on one id');
  const r2 = await c.post('', tx([
    { resource: pat('a', { id }), request: { method: 'PUT', url: `Patient/${id}` } },
    { request: { method: 'DELETE', url: `Patient/${id}` } },
  ]));
  assertOutcome(r2, undefined, 'PUT and DELETE on one id');
  const fu = `urn:uuid:${randomUUID()}`;
  const r3 = await c.post('', tx([
    { fullUrl: fu, resource: pat('a'), request: { method: 'POST', url: 'Patient' } },
    { fullUrl: fu, resource: pat('b'), request: { method: 'POST', url: 'Patient' } },
  ]));
  assertOutcome(r3, undefined, 'the same fullUrl twice');
  assert.equal(await c.historyTotal(), before_);
  assert.equal((await c.get(`/Patient/${id}`)).status, 404);
});

test('transaction order: DELETE, POST, PUT, then GET, whatever the entry order; responses in entry order', async () => {
  const v = unique('ord');
  const victim = await c.post('/Patient', pat(v));
  const keep = await c.post('/Patient', pat(`${v}-keep`, { gender: 'male' }));
  const w = unique('ord-new');
  const r = await c.post('', tx([
    { request: { method: 'GET', url: `Patient?${q(TEST_SYSTEM, v)}` } },
    { request: { method: 'GET', url: `Patient/${keep.json.id}` } },
    { request: { method: 'GET', url: `Patient?${q(TEST_SYSTEM, w)}` } },
    { resource: { ...keep.json, gender: 'female' }, request: { method: 'PUT', url: `Patient/${keep.json.id}` } },
    { resource: pat(w), request: { method: 'POST', url: 'Patient' } },
    { request: { method: 'DELETE', url: `Patient/${victim.json.id}` } },
  ]));
  assert.equal(r.status, 200, r.text);
  const e = r.json.entry;
  assert.equal(e.length, 6);
  // entry 0: the search ran after the DELETE
  assert.match(e[0].response.status, /^200/);
  assert.equal(e[0].resource.resourceType, 'Bundle');
  assert.equal(e[0].resource.total, 0, 'the deleted Patient is not found by the GET');
  // entry 1: the read ran after the PUT
  assert.equal(e[1].resource.gender, 'female');
  assert.equal(e[1].resource.meta.versionId, '2');
  // entry 2: the search ran after the POST
  assert.equal(e[2].resource.total, 1);
  assert.match(e[3].response.status, /^200/);
  assert.match(e[4].response.status, /^201/);
  assert.match(e[5].response.status, /^20[04]/);
  assertOutcome(await c.get(`/Patient/${victim.json.id}`), 410, 'deleted by the transaction');
});

test('transaction: PUT with a client id (create-on-update) and conditional update/delete', async () => {
  const id = `txput-${Date.now()}`;
  const v = unique('txcu');
  const gone = unique('txcd');
  await c.post('/Patient', pat(gone));
  const r = await c.post('', tx([
    { resource: pat(v, { id }), request: { method: 'PUT', url: `Patient/${id}` } },
    { resource: pat(`${v}-c`), request: { method: 'PUT', url: `Patient?${q(TEST_SYSTEM, `${v}-c`)}` } },
    { request: { method: 'DELETE', url: `Patient?${q(TEST_SYSTEM, gone)}` } },
  ]));
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.entry[0].response.status, /^201/);
  assert.match(r.json.entry[1].response.status, /^201/);
  assert.equal((await c.get(`/Patient/${id}`)).status, 200);
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, `${v}-c`)}`), 1);
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, gone)}`), 0);
  const again = await c.post('', tx([
    { resource: pat(`${v}-c`, { gender: 'male' }), request: { method: 'PUT', url: `Patient?${q(TEST_SYSTEM, `${v}-c`)}` } },
  ]));
  assert.match(again.json.entry[0].response.status, /^200/);
  assert.equal(again.json.entry[0].response.etag, 'W/"2"');
});

test('batch: entries succeed or fail independently', async () => {
  const v = unique('batch');
  const r = await c.post('', tx([
    { resource: pat(v), request: { method: 'POST', url: 'Patient' } },
    { resource: pat(v, { birthDate: '2021-02-30' }), request: { method: 'POST', url: 'Patient' } },
    { request: { method: 'GET', url: 'Patient/not-there' } },
    { resource: pat(v, { id: 'batch-put' }), request: { method: 'PUT', url: 'Patient/batch-put' } },
    { request: { method: 'GET', url: `Patient?${q(TEST_SYSTEM, v)}` } },
    { resource: { resourceType: 'Patient', identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '1234567890' }] }, request: { method: 'POST', url: 'Patient' } },
    { request: { method: 'FROB', url: 'Patient' } },
  ], 'batch'));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.type, 'batch-response');
  const e = r.json.entry;
  assert.equal(e.length, 7);
  assert.match(e[0].response.status, /^201/);
  assert.match(e[0].response.location, /Patient\/[^/]+\/_history\/1$/);
  assert.match(e[1].response.status, /^400/);
  assert.equal(e[1].response.outcome.resourceType, 'OperationOutcome');
  assert.match(e[2].response.status, /^404/);
  assert.match(e[3].response.status, /^20[01]/);
  assert.match(e[4].response.status, /^200/);
  assert.equal(e[5].response.status.slice(0, 3), '422');
  assert.match(e[6].response.status, /^4/);
  // the good ones are stored
  assert.equal(await c.count(`/Patient?${q(TEST_SYSTEM, v)}`), 2);
});

test('bundle type and shape errors', async () => {
  const before_ = await c.historyTotal();
  assertOutcome(await c.post('', { resourceType: 'Bundle', type: 'collection', entry: [] }), 400, 'collection');
  assertOutcome(await c.post('', { resourceType: 'Patient' }), 400, 'not a Bundle');
  assertOutcome(await c.post('', { resourceType: 'Bundle', type: 'transaction', entry: {} }), 400, 'entry not an array');
  assertOutcome(await c.post('', tx([{ resource: pat('x') }])), 400, 'no request');
  assertOutcome(await c.post('', tx([{ resource: pat('x'), request: { method: 'POST', url: 'Nope' } }])), undefined, 'unknown type in url');
  assertOutcome(await c.post('', tx([{ resource: pat('x'), request: { method: 'POST', url: 'Observation' } }])), 400, 'type mismatch');
  assert.equal(await c.historyTotal(), before_);
  const empty = await c.post('', tx([]));
  assert.equal(empty.status, 200, empty.text);
  assert.equal(empty.json.type, 'transaction-response');
});

// JSON Patch inside a Bundle travels as a Binary (contentType application/json-patch+json, data base64).
const patchEntry = (url, ops) => ({
  resource: { resourceType: 'Binary', contentType: 'application/json-patch+json',
    data: Buffer.from(JSON.stringify(ops)).toString('base64') },
  request: { method: 'PATCH', url },
});

test('transaction: PATCH entries (Binary JSON Patch) apply atomically with the other entries', async () => {
  const v = unique('txpatch');
  const created = await c.post('/Patient', pat(v, { birthDate: '1980-01-01' }));
  assert.equal(created.status, 201, created.text);
  const id = created.json.id;
  const r = await c.post('', tx([
    patchEntry(`Patient/${id}`, [{ op: 'replace', path: '/birthDate', value: '1981-02-03' }]),
    { resource: obs(`Patient/${id}`), request: { method: 'POST', url: 'Observation' } },
  ]));
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.entry[0].response.status, /^200/);
  assert.equal(r.json.entry[0].response.etag, 'W/"2"');
  const read = await c.get(`/Patient/${id}`);
  assert.equal(read.json.birthDate, '1981-02-03');
  assert.equal(read.json.meta.versionId, '2');

  // a patch that makes the resource invalid fails the whole transaction: nothing else is stored
  const before = (await c.get(`/Observation?subject=Patient/${id}&_summary=count`)).json.total;
  const bad = await c.post('', tx([
    { resource: obs(`Patient/${id}`), request: { method: 'POST', url: 'Observation' } },
    patchEntry(`Patient/${id}`, [{ op: 'replace', path: '/gender', value: 'bogus' }]),
  ]));
  assert.ok(bad.status >= 400 && bad.status < 500, bad.text);
  assertOutcome(bad);
  assert.equal((await c.get(`/Observation?subject=Patient/${id}&_summary=count`)).json.total, before);
  assert.equal((await c.get(`/Patient/${id}`)).json.meta.versionId, '2');

  // a PATCH entry without a JSON Patch Binary is refused
  const wrong = await c.post('', tx([{ resource: pat(v), request: { method: 'PATCH', url: `Patient/${id}` } }]));
  assert.equal(wrong.status, 400, wrong.text);
  assertOutcome(wrong);
});

test('batch: a PATCH entry (Binary JSON Patch) is applied on its own', async () => {
  const created = await c.post('/Patient', pat(unique('bpatch')));
  const id = created.json.id;
  const r = await c.post('', tx([
    patchEntry(`Patient/${id}`, [{ op: 'add', path: '/active', value: true }]),
    patchEntry(`Patient/does-not-exist`, [{ op: 'add', path: '/active', value: true }]),
  ], 'batch'));
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.entry[0].response.status, /^200/);
  assert.match(r.json.entry[1].response.status, /^404/);
  assert.equal((await c.get(`/Patient/${id}`)).json.active, true);
});

test('transaction: a malformed or zero ifMatch is refused, never treated as absent', async () => {
  const v = unique('ifm');
  for (const ifMatch of ['W/"0"', 'W/"x"']) {
    const r = await c.post('', tx([{ resource: pat(v, { id: 'ifm-target' }),
      request: { method: 'PUT', url: 'Patient/ifm-target', ifMatch } }]));
    assertOutcome(r, 400, `ifMatch ${ifMatch}`);
  }
  assert.equal((await c.get('/Patient/ifm-target')).status, 404, 'nothing was stored');
});

test('transaction: a conditional PUT whose body id differs from the matched resource is a 409, like a plain conditional update', async () => {
  const v = unique('cidc');
  const created = await c.post('/Patient', pat(v));
  assert.equal(created.status, 201, created.text);
  const r = await c.post('', tx([{ resource: pat(v, { id: 'someone-else', gender: 'male' }),
    request: { method: 'PUT', url: `Patient?${q(TEST_SYSTEM, v)}` } }]));
  assertOutcome(r, 409, 'conflicting body id');
  const read = await c.get(`/Patient/${created.json.id}`);
  assert.equal(read.json.meta.versionId, '1', 'the matched resource is untouched');
  assert.equal((await c.get('/Patient/someone-else')).status, 404);
});

test('transaction and batch: a GET or HEAD entry naming a type without a query is a search (fuzz finding: was a 500)', async () => {
  for (const type of ['transaction', 'batch']) {
    for (const method of ['GET', 'HEAD']) {
      const r = await c.post('/', { resourceType: 'Bundle', type, entry: [
        { fullUrl: `urn:uuid:${randomUUID()}`, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
        { request: { method, url: 'Observation' } }] });
      assert.equal(r.status, 200, `${type} ${method}: ${r.text.slice(0, 300)}`);
      assert.equal(r.json.entry[1].response.status.split(' ')[0], '200', `${type} ${method}`);
    }
  }
});
