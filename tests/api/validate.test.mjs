// $validate at type and instance level: the outcome a write would get, and nothing written.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, outcomeNames, NHS_SYSTEM } from './lib/server.mjs';

let srv;
let c;
let existing;
before(async () => {
  srv = await startServer();
  c = client(srv.base);
  const r = await c.post('/Patient', { resourceType: 'Patient', gender: 'male' });
  assert.equal(r.status, 201);
  existing = r.json;
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const noErrors = (r, what) => {
  assert.equal(r.status, 200, `${what}: ${r.text.slice(0, 600)}`);
  assert.equal(r.json.resourceType, 'OperationOutcome');
  const errs = (r.json.issue || []).filter((i) => i.severity === 'error' || i.severity === 'fatal');
  assert.deepEqual(errs, [], `${what}: no error issues`);
};
const params = (resource, mode) => ({ resourceType: 'Parameters', parameter: [
  ...(resource ? [{ name: 'resource', resource }] : []),
  ...(mode ? [{ name: 'mode', valueCode: mode }] : []),
] });
const valid = { resourceType: 'Patient', name: [{ family: 'Seacole', given: ['Mary'] }], birthDate: '1805-11-23',
  identifier: [{ system: NHS_SYSTEM, value: '9434765919' }] };
const invalid = { resourceType: 'Patient', birthDate: '1805-02-30' };

async function nothingWritten(fn) {
  const h = await c.historyTotal();
  const n = await c.count('/Patient');
  await fn();
  assert.equal(await c.historyTotal(), h, 'no version written');
  assert.equal(await c.count('/Patient'), n, 'no resource written');
}

test('type level, resource as the body: valid -> 200 with no error issues; invalid -> 400 naming the element', async () => {
  await nothingWritten(async () => {
    noErrors(await c.post('/Patient/$validate', valid), 'valid');
    const bad = await c.post('/Patient/$validate', invalid);
    const oo = assertOutcome(bad, 400, 'invalid');
    assert.ok(outcomeNames(oo, 'Patient.birthDate'), JSON.stringify(oo));
    assertOutcome(await c.post('/Patient/$validate', { resourceType: 'Patient', identifier: [{ system: NHS_SYSTEM, value: '1234567890' }] }),
      422, 'invalid NHS number');
    assertOutcome(await c.post('/Patient/$validate', { resourceType: 'Observation', status: 'final', code: { text: 'x' } }),
      400, 'type mismatch');
    assertOutcome(await c.post('/Patient/$validate', '{"resourceType":"Patient",'), 400, 'malformed JSON');
    assertOutcome(await c.post('/Patient/$validate', { resourceType: 'Patient', unknown: 1 }), 400, 'unknown element');
  });
});

test('type level, Parameters{resource, mode}', async () => {
  await nothingWritten(async () => {
    noErrors(await c.post('/Patient/$validate', params(valid)), 'Parameters without mode');
    noErrors(await c.post('/Patient/$validate', params(valid, 'create')), 'mode=create');
    assertOutcome(await c.post('/Patient/$validate', params(invalid, 'create')), 400, 'invalid, mode=create');
    // update needs an id
    assertOutcome(await c.post('/Patient/$validate', params(valid, 'update')), 400, 'mode=update without id');
    noErrors(await c.post('/Patient/$validate', params({ ...valid, id: 'abc' }, 'update')), 'mode=update with id');
    assertOutcome(await c.post('/Patient/$validate', params(valid, 'frobnicate')), 400, 'unknown mode');
    assertOutcome(await c.post('/Patient/$validate', params(null, 'create')), 400, 'no resource parameter');
  });
});

test('instance level: validates as an update of that resource', async () => {
  await nothingWritten(async () => {
    noErrors(await c.post(`/Patient/${existing.id}/$validate`, { ...existing, gender: 'female' }), 'instance, body');
    noErrors(await c.post(`/Patient/${existing.id}/$validate`, params({ ...existing, gender: 'female' }, 'update')), 'instance, Parameters');
    assertOutcome(await c.post(`/Patient/${existing.id}/$validate`, { ...existing, id: 'other' }), 400, 'id mismatch');
    assertOutcome(await c.post(`/Patient/${existing.id}/$validate`, { ...existing, gender: 'bogus' }), 400, 'invalid');
    noErrors(await c.post(`/Patient/${existing.id}/$validate`, params(null, 'delete')), 'mode=delete of an existing resource');
    assertOutcome(await c.post('/Patient/nobody/$validate', params(null, 'delete')), 404, 'mode=delete of an unknown resource');
  });
  // the resource is untouched
  const r = await c.get(`/Patient/${existing.id}`);
  assert.equal(r.json.meta.versionId, '1');
  assert.equal(r.json.gender, 'male');
});

test('$validate only answers POST; other operations are 501', async () => {
  assertOutcome(await c.get('/Patient/$validate'), 405, 'GET $validate');
  const r = await c.post('/Patient/$everything', {});
  assertOutcome(r, 501, '$everything');
});

test('$validate of other types (Observation with a bad code binding)', async () => {
  await nothingWritten(async () => {
    noErrors(await c.post('/Observation/$validate', { resourceType: 'Observation', status: 'final', code: { text: 'x' } }), 'valid Observation');
    const oo = assertOutcome(await c.post('/Observation/$validate', { resourceType: 'Observation', status: 'done', code: { text: 'x' } }), 400, 'status done');
    assert.ok(outcomeNames(oo, 'Observation.status'), JSON.stringify(oo));
  });
});
