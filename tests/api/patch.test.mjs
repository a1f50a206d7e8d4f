// PATCH with JSON Patch (RFC 6902): the result is validated like an update.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, outcomeNames, unique, TEST_SYSTEM } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

async function newPatient() {
  const r = await c.post('/Patient', {
    resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value: unique('patch') }],
    name: [{ family: 'Lovelace', given: ['Ada'] }], gender: 'female', birthDate: '1815-12-10',
  });
  assert.equal(r.status, 201);
  return r.json;
}

test('replace birthDate -> 200, version + 1, change stored', async () => {
  const p = await newPatient();
  const r = await c.patch(`/Patient/${p.id}`, [{ op: 'replace', path: '/birthDate', value: '1815-12-11' }]);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.birthDate, '1815-12-11');
  assert.equal(r.json.meta.versionId, '2');
  assert.equal(r.headers.get('etag'), 'W/"2"');
  const cur = await c.get(`/Patient/${p.id}`);
  assert.equal(cur.text, r.text);
  const h = await c.get(`/Patient/${p.id}/_history`);
  assert.equal(h.json.entry[0].request.method, 'PATCH');
});

test('add, remove, copy, move and test operations', async () => {
  const p = await newPatient();
  const ops = [
    { op: 'test', path: '/gender', value: 'female' },
    { op: 'add', path: '/name/0/given/-', value: 'King' },
    { op: 'add', path: '/telecom', value: [{ system: 'phone', value: '0123' }] },
    { op: 'copy', from: '/name/0/family', path: '/name/0/text' },
    { op: 'move', from: '/telecom/0/value', path: '/telecom/0/value' },
    { op: 'remove', path: '/birthDate' },
  ];
  const r = await c.patch(`/Patient/${p.id}`, ops);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.name[0].given, ['Ada', 'King']);
  assert.equal(r.json.name[0].text, 'Lovelace');
  assert.equal(r.json.telecom[0].value, '0123');
  assert.equal(r.json.birthDate, undefined);
});

test('If-Match on PATCH: stale -> 412', async () => {
  const p = await newPatient();
  const ops = [{ op: 'replace', path: '/gender', value: 'other' }];
  assertOutcome(await c.patch(`/Patient/${p.id}`, ops, { headers: { 'If-Match': 'W/"5"' } }), 412, 'stale');
  const r = await c.patch(`/Patient/${p.id}`, ops, { headers: { 'If-Match': 'W/"1"' } });
  assert.equal(r.status, 200, r.text);
});

test('a patch that makes the resource invalid -> 4xx, nothing stored', async () => {
  const p = await newPatient();
  for (const [ops, status, path] of [
    [[{ op: 'replace', path: '/gender', value: 'bogus' }], 400, 'Patient.gender'],
    [[{ op: 'replace', path: '/birthDate', value: '2021-02-30' }], 400, 'Patient.birthDate'],
    [[{ op: 'add', path: '/unknownElement', value: 1 }], 400, 'Patient.unknownElement'],
    [[{ op: 'replace', path: '/resourceType', value: 'Observation' }], 422],
    [[{ op: 'replace', path: '/id', value: 'another-id' }], 422],
    [[{ op: 'remove', path: '/id' }], 422],
  ]) {
    const r = await c.patch(`/Patient/${p.id}`, ops);
    const oo = assertOutcome(r, status, JSON.stringify(ops));
    if (path) assert.ok(outcomeNames(oo, path), `${JSON.stringify(ops)} names ${path}: ${r.text}`);
  }
  const cur = await c.get(`/Patient/${p.id}`);
  assert.equal(cur.json.meta.versionId, '1');
  assert.equal(cur.json.gender, 'female');
  const h = await c.get(`/Patient/${p.id}/_history`);
  assert.equal(h.json.total, 1);
});

test('a failing test op, or a path that does not exist -> 4xx, nothing stored', async () => {
  const p = await newPatient();
  const failing = [
    [{ op: 'test', path: '/gender', value: 'male' }, { op: 'replace', path: '/birthDate', value: '1900-01-01' }],
    [{ op: 'replace', path: '/birthDate', value: '1900-01-01' }, { op: 'test', path: '/gender', value: 'male' }],
    [{ op: 'remove', path: '/deceasedBoolean' }],
    [{ op: 'replace', path: '/name/5/family', value: 'x' }],
    [{ op: 'add', path: '/name/7', value: { family: 'x' } }],
    [{ op: 'frobnicate', path: '/gender' }],
    [{ op: 'add', path: 'gender', value: 'male' }],
  ];
  for (const ops of failing) {
    const r = await c.patch(`/Patient/${p.id}`, ops);
    assertOutcome(r, 422, JSON.stringify(ops));
  }
  const cur = await c.get(`/Patient/${p.id}`);
  assert.equal(cur.json.meta.versionId, '1');
  assert.equal(cur.json.birthDate, '1815-12-10');
});

test('malformed patch documents and media types', async () => {
  const p = await newPatient();
  assertOutcome(await c.patch(`/Patient/${p.id}`, '[{"op":"replace",'), 400, 'malformed JSON');
  assertOutcome(await c.patch(`/Patient/${p.id}`, { op: 'replace', path: '/gender', value: 'male' }), 400, 'not an array');
  const ct = await c.req('PATCH', `/Patient/${p.id}`, { body: [{ op: 'replace', path: '/gender', value: 'male' }],
    headers: { 'Content-Type': 'text/plain' } });
  assertOutcome(ct, 415, 'text/plain');
  assert.equal((await c.get(`/Patient/${p.id}`)).json.meta.versionId, '1');
});

test('PATCH of an unknown or deleted resource', async () => {
  assertOutcome(await c.patch('/Patient/nope', [{ op: 'remove', path: '/gender' }]), 404, 'unknown');
  const p = await newPatient();
  assert.equal((await c.del(`/Patient/${p.id}`)).status, 204);
  assertOutcome(await c.patch(`/Patient/${p.id}`, [{ op: 'remove', path: '/gender' }]), 410, 'deleted');
});

test('NHS number rules apply to the patched result', async () => {
  const p = await newPatient();
  const bad = await c.patch(`/Patient/${p.id}`, [{ op: 'add', path: '/identifier/-',
    value: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '1234567890' } }]);
  assertOutcome(bad, 422, 'invalid NHS number by patch');
  const good = await c.patch(`/Patient/${p.id}`, [{ op: 'add', path: '/identifier/-',
    value: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9434765919' } }]);
  assert.equal(good.status, 200, good.text);
});
