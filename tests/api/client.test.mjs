// A realistic client flow with a real FHIR client library (fhir-kit-client from npm): the same
// calls an application would make, against the real binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Client from 'fhir-kit-client';
import { startServer, NHS_SYSTEM } from './lib/server.mjs';

let srv;
let fhir;
before(async () => {
  srv = await startServer();
  fhir = new Client({ baseUrl: srv.base, customHeaders: { Accept: 'application/fhir+json' } });
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const status = (data) => Client.httpFor(data).response.status;
const header = (data, name) => Client.httpFor(data).response.headers.get(name);
async function rejects(promise, wantStatus) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.response?.status, wantStatus, `expected ${wantStatus}: ${JSON.stringify(e.response?.data).slice(0, 400)}`);
    assert.equal(e.response.data.resourceType, 'OperationOutcome');
    return e.response.data;
  }
  assert.fail(`expected an HTTP ${wantStatus}`);
}

test('capability statement through the client', async () => {
  const cs = await fhir.capabilityStatement();
  assert.equal(cs.resourceType, 'CapabilityStatement');
  assert.equal(cs.fhirVersion, '4.0.1');
});

test('a GP system registers a patient, records observations, corrects, searches, pages and deletes', async () => {
  // register
  const created = await fhir.create({ resourceType: 'Patient', body: {
    resourceType: 'Patient', identifier: [{ system: NHS_SYSTEM, value: '9434765919' }],
    name: [{ use: 'official', family: 'Nightingale', given: ['Florence'] }], gender: 'female', birthDate: '1820-05-12',
  } });
  assert.equal(status(created), 201);
  assert.equal(created.meta.versionId, '1');
  assert.match(header(created, 'location'), new RegExp(`/Patient/${created.id}/_history/1$`));
  const pid = created.id;

  // read and vread
  const read = await fhir.read({ resourceType: 'Patient', id: pid });
  assert.deepEqual(read, created);
  const v1 = await fhir.vread({ resourceType: 'Patient', id: pid, version: '1' });
  assert.deepEqual(v1, created);

  // find by NHS number
  const found = await fhir.search({ resourceType: 'Patient', searchParams: { identifier: `${NHS_SYSTEM}|9434765919` } });
  assert.equal(found.total, 1);
  assert.equal(found.entry[0].resource.id, pid);

  // record 12 observations in one transaction, referencing the patient by a conditional reference
  const entries = Array.from({ length: 12 }, (_, i) => ({
    fullUrl: `urn:uuid:${randomUUID()}`,
    resource: { resourceType: 'Observation', status: 'final',
      code: { coding: [{ system: 'http://snomed.info/sct', code: '27113001', display: 'Body weight' }] },
      subject: { reference: `Patient?identifier=${NHS_SYSTEM}|9434765919` },
      effectiveDateTime: `2024-01-${String(i + 1).padStart(2, '0')}T09:00:00Z`,
      valueQuantity: { value: 60 + i / 10, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' } },
    request: { method: 'POST', url: 'Observation' },
  }));
  const txr = await fhir.transaction({ body: { resourceType: 'Bundle', type: 'transaction', entry: entries } });
  assert.equal(txr.type, 'transaction-response');
  assert.equal(txr.entry.length, 12);
  assert.ok(txr.entry.every((e) => e.response.status.startsWith('201')));

  // page through them with the client's nextPage
  let page = await fhir.search({ resourceType: 'Observation', searchParams: { subject: `Patient/${pid}`, _count: 5 } });
  assert.equal(page.total, 12);
  const seen = [];
  for (let guard = 0; page && guard < 10; guard++) {
    for (const e of page.entry || []) {
      assert.equal(e.resource.subject.reference, `Patient/${pid}`);
      seen.push(e.resource.id);
    }
    page = await fhir.nextPage({ bundle: page });
  }
  assert.equal(new Set(seen).size, 12);

  // correct the birth date with optimistic locking, then with a JSON Patch
  const updated = await fhir.update({ resourceType: 'Patient', id: pid, body: { ...read, birthDate: '1820-05-13' },
    options: { headers: { 'If-Match': 'W/"1"' } } });
  assert.equal(updated.meta.versionId, '2');
  await rejects(fhir.update({ resourceType: 'Patient', id: pid, body: { ...read, birthDate: '1820-05-14' },
    options: { headers: { 'If-Match': 'W/"1"' } } }), 412);
  const patched = await fhir.patch({ resourceType: 'Patient', id: pid,
    JSONPatch: [{ op: 'replace', path: '/birthDate', value: '1820-05-12' }] });
  assert.equal(patched.meta.versionId, '3');
  assert.equal(patched.birthDate, '1820-05-12');

  // history through the client
  const hist = await fhir.history({ resourceType: 'Patient', id: pid });
  assert.equal(hist.type, 'history');
  assert.deepEqual(hist.entry.map((e) => e.resource.meta.versionId), ['3', '2', '1']);
  const typeHist = await fhir.typeHistory({ resourceType: 'Observation' });
  assert.equal(typeHist.total, 12);

  // validation errors come back as OperationOutcomes
  const oo = await rejects(fhir.create({ resourceType: 'Patient', body: { resourceType: 'Patient', birthDate: '1820-02-30' } }), 400);
  assert.ok(oo.issue.some((i) => (i.expression || []).includes('Patient.birthDate')));
  await rejects(fhir.create({ resourceType: 'Patient', body: { resourceType: 'Patient',
    identifier: [{ system: NHS_SYSTEM, value: '1234567890' }] } }), 422);

  // $validate through the client's operation helper
  const vo = await fhir.operation({ resourceType: 'Patient', name: '$validate', input: { ...read, id: undefined } });
  assert.equal(vo.resourceType, 'OperationOutcome');

  // delete, then the read is 410 and old versions are still there
  const del = await fhir.delete({ resourceType: 'Patient', id: pid });
  assert.equal(status(del), 204);
  await rejects(fhir.read({ resourceType: 'Patient', id: pid }), 410);
  const old = await fhir.vread({ resourceType: 'Patient', id: pid, version: '2' });
  assert.equal(old.birthDate, '1820-05-13');
});

test('batch through the client', async () => {
  const r = await fhir.batch({ body: { resourceType: 'Bundle', type: 'batch', entry: [
    { resource: { resourceType: 'Practitioner', name: [{ family: 'Snow', given: ['John'] }] }, request: { method: 'POST', url: 'Practitioner' } },
    { request: { method: 'GET', url: 'Practitioner/does-not-exist' } },
  ] } });
  assert.equal(r.type, 'batch-response');
  assert.match(r.entry[0].response.status, /^201/);
  assert.match(r.entry[1].response.status, /^404/);
});
