// PATCH with FHIRPath Patch (R4 "FHIRPath Patch": a Parameters body, Content-Type application/fhir+json):
// add, insert, delete, replace, move; validated like an update; 400/422 OperationOutcomes; and as
// PATCH entries of batch and transaction Bundles.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, unique, TEST_SYSTEM } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const fpatch = (id, ...ops) => c.req('PATCH', `/Patient/${id}`, {
  body: { resourceType: 'Parameters', parameter: ops.map(op) },
  headers: { 'Content-Type': 'application/fhir+json' },
});

/** One operation parameter: {type, path, name, value: {valueX: ...} | {part: [...]}, index, source, destination}. */
function op(o) {
  const part = [{ name: 'type', valueCode: o.type }, { name: 'path', valueString: o.path }];
  if (o.name !== undefined) part.push({ name: 'name', valueString: o.name });
  if (o.value !== undefined) part.push({ name: 'value', ...o.value });
  for (const k of ['index', 'source', 'destination']) if (o[k] !== undefined) part.push({ name: k, valueInteger: o[k] });
  return { name: 'operation', part };
}

async function newPatient(extra = {}) {
  const r = await c.post('/Patient', {
    resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value: unique('fpp') }],
    name: [{ family: 'Lovelace', given: ['Ada'] }, { use: 'nickname', given: ['Countess'] }],
    gender: 'female', birthDate: '1815-12-10', ...extra,
  });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

test('replace a primitive -> 200, version 2, stored, history method PATCH', async () => {
  const p = await newPatient();
  const r = await fpatch(p.id, { type: 'replace', path: 'Patient.birthDate', value: { valueDate: '1815-12-11' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.birthDate, '1815-12-11');
  assert.equal(r.json.meta.versionId, '2');
  assert.equal((await c.get(`/Patient/${p.id}`)).text, r.text);
  const h = await c.get(`/Patient/${p.id}/_history`);
  assert.equal(h.json.entry[0].request.method, 'PATCH');
  // the search index follows the patch
  const s = await c.get(`/Patient?_id=${p.id}&birthdate=1815-12-11`);
  assert.equal(s.json.entry?.length, 1, s.text.slice(0, 400));
});

test('add a single element, a list item, and a complex value built from parts', async () => {
  const p = await newPatient();
  const r = await fpatch(p.id,
    { type: 'add', path: 'Patient', name: 'active', value: { valueBoolean: true } },
    { type: 'add', path: 'Patient.name.where(use = \'nickname\')', name: 'given', value: { valueString: 'Ada2' } },
    { type: 'add', path: 'Patient', name: 'telecom', value: { valueContactPoint: { system: 'phone', value: '0123' } } },
    { type: 'add', path: 'Patient', name: 'contact', value: { part: [
      { name: 'name', valueHumanName: { family: 'Byron' } },
      { name: 'relationship', valueCodeableConcept: { text: 'mother' } },
    ] } },
    { type: 'add', path: 'Patient', name: 'deceased', value: { valueBoolean: false } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.active, true);
  assert.deepEqual(r.json.name[1].given, ['Countess', 'Ada2']);
  assert.deepEqual(r.json.telecom, [{ system: 'phone', value: '0123' }]);
  assert.deepEqual(r.json.contact, [{ name: { family: 'Byron' }, relationship: [{ text: 'mother' }] }]);
  assert.equal(r.json.deceasedBoolean, false);
});

test('insert and move within a list; insert into an absent list at 0', async () => {
  const p = await newPatient();
  const r = await fpatch(p.id,
    { type: 'insert', path: 'Patient.name', index: 0, value: { valueHumanName: { family: 'First' } } },
    { type: 'move', path: 'Patient.name', source: 0, destination: 2 },
    { type: 'insert', path: 'Patient.name[0].given', index: 1, value: { valueString: 'Augusta' } },
    { type: 'insert', path: 'Patient.address', index: 0, value: { valueAddress: { city: 'London' } } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.name.map((n) => n.family ?? null), ['Lovelace', null, 'First']);
  assert.deepEqual(r.json.name[0].given, ['Ada', 'Augusta']);
  assert.deepEqual(r.json.address, [{ city: 'London' }]);
});

test('delete: a list item, a single element, the last item removes the list, no match is a no-op', async () => {
  const p = await newPatient({ telecom: [{ system: 'email', value: 'a@example.org' }] });
  const r = await fpatch(p.id,
    { type: 'delete', path: 'Patient.name.where(use = \'nickname\')' },
    { type: 'delete', path: 'Patient.birthDate' },
    { type: 'delete', path: 'Patient.telecom[0]' },
    { type: 'delete', path: 'Patient.photo' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.name.length, 1);
  assert.equal(r.json.birthDate, undefined);
  assert.equal(r.json.telecom, undefined);
});

test('replace a choice value with another type renames the JSON member', async () => {
  const p = await newPatient({ deceasedBoolean: false });
  const r = await fpatch(p.id, { type: 'replace', path: 'Patient.deceased', value: { valueDateTime: '1852-11-27' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.deceasedDateTime, '1852-11-27');
  assert.equal(r.json.deceasedBoolean, undefined);
});

test('malformed Parameters -> 400, nothing stored', async () => {
  const p = await newPatient();
  const bad = [
    [{ type: 'frobnicate', path: 'Patient.gender' }, 'unknown type'],
    [{ type: 'replace', path: 'Patient.gender' }, 'replace without value'],
    [{ type: 'add', path: 'Patient', value: { valueBoolean: true } }, 'add without name'],
    [{ type: 'insert', path: 'Patient.name', value: { valueHumanName: {} } }, 'insert without index'],
    [{ type: 'replace', path: 'Patient.name.where(', value: { valueString: 'x' } }, 'FHIRPath syntax error'],
  ];
  for (const [o, what] of bad) assertOutcome(await fpatch(p.id, o), 400, what);
  const notParams = await c.req('PATCH', `/Patient/${p.id}`, { body: { resourceType: 'Patient' } });
  assertOutcome(notParams, 400, 'a body that is not Parameters');
  const wrongName = await c.req('PATCH', `/Patient/${p.id}`, { body: { resourceType: 'Parameters', parameter: [{ name: 'op' }] } });
  assertOutcome(wrongName, 400, 'parameter not named operation');
  assert.equal((await c.get(`/Patient/${p.id}`)).json.meta.versionId, '1');
});

test('operations that cannot apply -> 422; an invalid result -> 4xx; nothing stored', async () => {
  const p = await newPatient();
  const cases = [
    [{ type: 'replace', path: 'Patient.photo', value: { valueAttachment: {} } }, 'replace with no match'],
    [{ type: 'replace', path: 'Patient.name', value: { valueHumanName: { family: 'X' } } }, 'replace of two elements'],
    [{ type: 'add', path: 'Patient', name: 'gender', value: { valueCode: 'male' } }, 'add to a present single element'],
    [{ type: 'add', path: 'Patient', name: 'nonsense', value: { valueString: 'x' } }, 'add of an unknown element'],
    [{ type: 'insert', path: 'Patient.name', index: 5, value: { valueHumanName: {} } }, 'insert out of range'],
    [{ type: 'move', path: 'Patient.name', source: 0, destination: 9 }, 'move out of range'],
    [{ type: 'delete', path: 'Patient.name' }, 'delete of two elements'],
  ];
  for (const [o, what] of cases) assertOutcome(await fpatch(p.id, o), 422, what);
  // the patch applies but the result is invalid: validated like an update
  const inv = await fpatch(p.id, { type: 'replace', path: 'Patient.gender', value: { valueCode: 'robot' } });
  assertOutcome(inv, undefined, 'invalid gender code');
  // a later failing operation undoes the earlier ones
  const partial = await fpatch(p.id, { type: 'replace', path: 'Patient.gender', value: { valueCode: 'male' } },
    { type: 'delete', path: 'Patient.name' });
  assertOutcome(partial, 422, 'second op fails');
  const cur = await c.get(`/Patient/${p.id}`);
  assert.equal(cur.json.meta.versionId, '1');
  assert.equal(cur.json.gender, 'female');
  // a patch on an unknown resource
  assertOutcome(await fpatch('no-such-patient', { type: 'delete', path: 'Patient.gender' }), 404, 'unknown id');
});

test('FHIRPath Patch entries in batch and transaction Bundles', async () => {
  const p1 = await newPatient();
  const p2 = await newPatient();
  const params = (...ops) => ({ resourceType: 'Parameters', parameter: ops.map(op) });
  const tx = await c.post('/', {
    resourceType: 'Bundle', type: 'transaction', entry: [
      { resource: params({ type: 'replace', path: 'Patient.gender', value: { valueCode: 'other' } }),
        request: { method: 'PATCH', url: `Patient/${p1.id}` } },
    ],
  });
  assert.equal(tx.status, 200, tx.text);
  assert.match(tx.json.entry[0].response.status, /^200/);
  assert.equal((await c.get(`/Patient/${p1.id}`)).json.gender, 'other');
  // a failing FHIRPath Patch rolls back the transaction
  const txBad = await c.post('/', {
    resourceType: 'Bundle', type: 'transaction', entry: [
      { resource: params({ type: 'replace', path: 'Patient.gender', value: { valueCode: 'male' } }),
        request: { method: 'PATCH', url: `Patient/${p1.id}` } },
      { resource: params({ type: 'delete', path: 'Patient.name' }), request: { method: 'PATCH', url: `Patient/${p2.id}` } },
    ],
  });
  assertOutcome(txBad, 422, 'transaction with a failing patch');
  assert.equal((await c.get(`/Patient/${p1.id}`)).json.gender, 'other');
  const batch = await c.post('/', {
    resourceType: 'Bundle', type: 'batch', entry: [
      { resource: params({ type: 'replace', path: 'Patient.gender', value: { valueCode: 'male' } }),
        request: { method: 'PATCH', url: `Patient/${p2.id}` } },
      { resource: params({ type: 'delete', path: 'Patient.name' }), request: { method: 'PATCH', url: `Patient/${p1.id}` } },
    ],
  });
  assert.equal(batch.status, 200, batch.text);
  assert.match(batch.json.entry[0].response.status, /^200/);
  assert.match(batch.json.entry[1].response.status, /^422/);
  assert.equal((await c.get(`/Patient/${p2.id}`)).json.gender, 'male');
});

test('the CapabilityStatement advertises FHIRPath Patch', async () => {
  const r = await c.get('/metadata');
  assert.ok(r.json.patchFormat.includes('application/fhir+json'), JSON.stringify(r.json.patchFormat));
});
