// Bad input: each gets the right 4xx with an OperationOutcome, in bounded time, and nothing is
// written (the system history total is checked after every case).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, outcomeNames, rawUpload, req, NHS_SYSTEM } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

/** Run one bad request; assert the status (number, or undefined for any 4xx), an outcome and no write. */
async function refused(what, send, status, path) {
  const before_ = await c.historyTotal();
  const t0 = Date.now();
  const r = await send();
  const oo = assertOutcome(r, status, what);
  assert.ok(Date.now() - t0 < 20_000, `${what}: answered in bounded time`);
  if (path) assert.ok(outcomeNames(oo, path), `${what}: the outcome names ${path}: ${r.text.slice(0, 600)}`);
  assert.equal(await c.historyTotal(), before_, `${what}: nothing written`);
  return oo;
}

test('malformed JSON -> 400', async () => {
  for (const body of ['{"resourceType":"Patient",', '{resourceType:"Patient"}', '{"resourceType":"Patient"} trailing',
    '', '[]', '"Patient"', '{"resourceType":"Patient","x":NaN}', '{"resourceType":"Patient","gender":"male",}',
    '{"resourceType":"Patient","name":[{"text":"\\ud800"}]}']) {
    await refused(`body ${JSON.stringify(body)}`, () => c.post('/Patient', body), 400);
  }
  // invalid UTF-8
  await refused('invalid UTF-8', () => c.post('/Patient', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), 400);
});

test('a 50 MB body -> 413 (with Content-Length)', async () => {
  const before_ = await c.historyTotal();
  const r = await rawUpload(`${srv.base}/Patient`, { size: 50 * 1024 * 1024 });
  assert.equal(r.status, 413, `got ${JSON.stringify(r).slice(0, 300)}`);
  const oo = JSON.parse(r.text);
  assert.equal(oo.resourceType, 'OperationOutcome');
  assert.ok(oo.issue[0].diagnostics);
  assert.equal(await c.historyTotal(), before_);
  // the server is still fine
  assert.equal((await c.get('/metadata')).status, 200);
});

test('a 50 MB chunked body (no Content-Length) -> 413', async () => {
  const r = await rawUpload(`${srv.base}/Patient`, { size: 50 * 1024 * 1024, chunked: true });
  assert.equal(r.status, 413, `got ${JSON.stringify(r).slice(0, 300)}`);
});

test('JSON nested 10,000 deep -> 400, bounded', async () => {
  const deep = `{"resourceType":"Patient","extension":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
  await refused('10,000 arrays deep', () => c.post('/Patient', deep), 400);
  const deepObj = `{"resourceType":"Patient","a":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
  await refused('10,000 objects deep', () => c.post('/Patient', deepObj), 400);
});

test('duplicate key -> 400', async () => {
  await refused('duplicate gender', () => c.post('/Patient', '{"resourceType":"Patient","gender":"male","gender":"female"}'), 400);
  await refused('duplicate nested', () => c.post('/Patient', '{"resourceType":"Patient","name":[{"family":"a","family":"b"}]}'), 400);
});

test('unknown element -> 400 naming the element', async () => {
  await refused('unknown top-level', () => c.post('/Patient', { resourceType: 'Patient', foo: 1 }), 400, 'Patient.foo');
  await refused('unknown nested', () => c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'x', nickname: 'y' }] }), 400);
  await refused('choice without type', () => c.post('/Patient', { resourceType: 'Patient', deceased: true }), 400);
});

test('wrong type -> 400 naming Patient.birthDate', async () => {
  await refused('birthDate: 123', () => c.post('/Patient', { resourceType: 'Patient', birthDate: 123 }), 400, 'Patient.birthDate');
  await refused('active: "yes"', () => c.post('/Patient', { resourceType: 'Patient', active: 'yes' }), 400, 'Patient.active');
  await refused('name not an array', () => c.post('/Patient', { resourceType: 'Patient', name: { family: 'x' } }), 400);
  await refused('multipleBirthInteger 1.5', () => c.post('/Patient', { resourceType: 'Patient', multipleBirthInteger: 1.5 }), 400);
});

test('bad dates -> 400', async () => {
  for (const d of ['2021-02-30', '2021-13-01', '21-01-01', '2021-1-1', '2021-02-29']) {
    await refused(`birthDate ${d}`, () => c.post('/Patient', { resourceType: 'Patient', birthDate: d }), 400, 'Patient.birthDate');
  }
  await refused('bad dateTime', () => c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' },
    effectiveDateTime: '2021-01-01T25:00:00Z' }), 400);
  await refused('dateTime with time but no zone', () => c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' },
    effectiveDateTime: '2021-01-01T10:00:00' }), 400);
  const ok = await c.post('/Patient', { resourceType: 'Patient', birthDate: '2020-02-29' });
  assert.equal(ok.status, 201, 'a leap day is a date');
});

test('missing required elements and bad codes -> 400', async () => {
  await refused('Observation without status', () => c.post('/Observation', { resourceType: 'Observation', code: { text: 'x' } }), 400, 'Observation.status');
  await refused('gender bogus', () => c.post('/Patient', { resourceType: 'Patient', gender: 'bogus' }), 400, 'Patient.gender');
  await refused('empty string', () => c.post('/Patient', { resourceType: 'Patient', gender: '' }), 400);
  await refused('empty object', () => c.post('/Patient', { resourceType: 'Patient', maritalStatus: {} }), 400);
});

test('unknown resource type -> 404', async () => {
  await refused('POST /Foo', () => c.post('/Foo', { resourceType: 'Foo' }), 404);
  await refused('PUT /Foo/1', () => c.put('/Foo/1', { resourceType: 'Foo', id: '1' }), 404);
  await refused('resourceType Foo posted to the base', () => c.post('', { resourceType: 'Foo' }), 400);
});

test('id over 64 characters -> 400', async () => {
  const id = 'a'.repeat(65);
  await refused('PUT with a 65-char id', () => c.put(`/Patient/${id}`, { resourceType: 'Patient', id }), 400);
  await refused('id with bad characters', () => c.put('/Patient/a_b', { resourceType: 'Patient', id: 'a_b' }), 400);
  assertOutcome(await c.get(`/Patient/${id}`), 400, 'read with a 65-char id');
  const ok = await c.put(`/Patient/${'b'.repeat(64)}`, { resourceType: 'Patient', id: 'b'.repeat(64) });
  assert.equal(ok.status, 201, '64 characters is fine');
});

test('resourceType mismatch with the URL -> 400', async () => {
  await refused('Observation posted to /Patient', () => c.post('/Patient', { resourceType: 'Observation', status: 'final', code: { text: 'x' } }), 400);
  await refused('no resourceType', () => c.post('/Patient', { gender: 'male' }), 400);
  await refused('PUT mismatch', () => c.put('/Patient/m1', { resourceType: 'Observation', id: 'm1', status: 'final', code: { text: 'x' } }), 400);
});

test('NHS number: an invalid one -> 422, a valid one -> 201', async () => {
  const oo = await refused('NHS 1234567890', () => c.post('/Patient', { resourceType: 'Patient',
    identifier: [{ system: NHS_SYSTEM, value: '1234567890' }] }), 422);
  assert.ok(JSON.stringify(oo).includes('Patient.identifier'), `names the identifier: ${JSON.stringify(oo)}`);
  for (const v of ['943476591', '94347659190', '943476591X', '943 476 5919']) {
    await refused(`NHS ${v}`, () => c.post('/Patient', { resourceType: 'Patient', identifier: [{ system: NHS_SYSTEM, value: v }] }), 422);
  }
  const ok = await c.post('/Patient', { resourceType: 'Patient', identifier: [{ system: NHS_SYSTEM, value: '9434765919' }] });
  assert.equal(ok.status, 201, ok.text);
  // other systems are not checked
  const other = await c.post('/Patient', { resourceType: 'Patient', identifier: [{ system: 'http://example.org/mrn', value: '1234567890' }] });
  assert.equal(other.status, 201);
});

test('narrative with active content -> 400', async () => {
  const div = (inner) => ({ resourceType: 'Patient', text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${inner}</div>` } });
  for (const inner of ['<script>alert(1)</script>', '<p onclick="alert(1)">x</p>', '<a href="javascript:alert(1)">x</a>',
    '<iframe src="http://example.org"></iframe>', '<form action="x"><input/></form>', '<img src="x" onerror="alert(1)"/>']) {
    await refused(`narrative ${inner}`, () => c.post('/Patient', div(inner)), 400, 'Patient.text.div');
  }
  await refused('narrative that is not XHTML', () => c.post('/Patient', div('<p>unclosed')), 400);
  const ok = await c.post('/Patient', div('<p>Hello <b>world</b> &amp; friends</p>'));
  assert.equal(ok.status, 201, ok.text);
});

test('unknown modifierExtension -> 4xx', async () => {
  await refused('modifierExtension', () => c.post('/Patient', { resourceType: 'Patient',
    modifierExtension: [{ url: 'http://example.org/fhir/StructureDefinition/unknown-modifier', valueBoolean: true }] }));
  await refused('nested modifierExtension', () => c.post('/Patient', { resourceType: 'Patient',
    name: [{ family: 'x', modifierExtension: [{ url: 'http://example.org/m', valueBoolean: true }] }] }));
  const ok = await c.post('/Patient', { resourceType: 'Patient',
    extension: [{ url: 'http://example.org/fhir/StructureDefinition/ordinary', valueString: 'fine' }] });
  assert.equal(ok.status, 201, 'an ordinary extension is fine');
});

test('a transaction with one failing entry -> 4xx and nothing stored', async () => {
  await refused('transaction', () => c.post('', { resourceType: 'Bundle', type: 'transaction', entry: [
    { resource: { resourceType: 'Patient', gender: 'male' }, request: { method: 'POST', url: 'Patient' } },
    { resource: { resourceType: 'Patient', gender: 'male' }, request: { method: 'PUT', url: 'Patient/tx-good' } },
    { resource: { resourceType: 'Patient', birthDate: 123 }, request: { method: 'POST', url: 'Patient' } },
  ] }));
  assert.equal((await c.get('/Patient/tx-good')).status, 404);
});

test('unsupported Content-Type -> 415; wrong method -> 405', async () => {
  await refused('text/plain', () => c.post('/Patient', '{"resourceType":"Patient"}', { headers: { 'Content-Type': 'text/plain' } }), 415);
  await refused('application/fhir+xml', () => c.post('/Patient', '<Patient xmlns="http://hl7.org/fhir"/>',
    { headers: { 'Content-Type': 'application/fhir+xml' } }), 415);
  await refused('DELETE /metadata', () => c.del('/metadata'), 405);
  await refused('POST /Patient/x', () => c.post('/Patient/x', { resourceType: 'Patient', id: 'x' }), 405);
});

test('bad query input -> 400', async () => {
  assertOutcome(await c.get('/Patient?birthdate=notadate'), 400, 'bad date parameter');
  assertOutcome(await c.get('/Patient?nosuchparam=1'), 400, 'unknown parameter (strict by default)');
  assertOutcome(await c.get('/Patient?name=%zz'), 400, 'bad percent-encoding');
  assertOutcome(await c.get('/Patient?_count=abc'), 400, 'bad _count');
  const lenient = await c.get('/Patient?nosuchparam=1', { headers: { Prefer: 'handling=lenient' } });
  assert.equal(lenient.status, 200, 'lenient handling ignores it');
  const many = Array.from({ length: 150 }, (_, i) => `name=a${i}`).join('&');
  assertOutcome(await c.get(`/Patient?${many}`), 400, 'too many parameters');
  const long = await req('GET', `${srv.base}/Patient?name=${'x'.repeat(10_000)}`);
  assertOutcome(long, 414, 'URL too long');
});

test('the server is still healthy after all of this', async () => {
  assert.equal((await req('GET', `${srv.origin}/healthz`)).status, 200);
  const r = await c.post('/Patient', { resourceType: 'Patient', gender: 'female' });
  assert.equal(r.status, 201);
});
