// CapabilityStatement, content negotiation, health, routing errors (405/415/406/404).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome, req, SLOW } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

test('GET /healthz answers 200 ok', async () => {
  const r = await req('GET', `${srv.origin}/healthz`);
  assert.equal(r.status, 200);
  assert.equal(r.json.status, 'ok');
});

test('GET /healthz counts durable writes and times their syncs', async () => {
  const before = (await req('GET', `${srv.origin}/healthz`)).json.durability;
  for (let i = 0; i < 3; i++) assert.equal((await c.post('/Patient', { resourceType: 'Patient', gender: 'other' })).status, 201);
  const d = (await req('GET', `${srv.origin}/healthz`)).json.durability;
  assert.equal(d.writes - before.writes, 3, 'each create is one write unit');
  assert.ok(d.groups - before.groups >= 1 && d.syncs - before.syncs >= 1, 'a group commit and its sync');
  assert.equal(d.failedCommits, 0);
  const counted = d.syncHistogramUs.reduce((n, [, count]) => n + count, 0);
  assert.equal(counted, d.syncs, 'the histogram holds every sync');
  for (const [limit] of d.syncHistogramUs) assert.ok(limit === null || limit >= 16);
  assert.ok(d.syncP50Us > 0 && d.syncP50Us <= d.syncP99Us);
  assert.ok(d.syncMeanUs <= d.syncMaxUs && d.syncTotalUs >= d.syncMaxUs);
});

test('GET /healthz reports memory; an idle server gives its heap back once after a burst', async () => {
  const health = async () => (await req('GET', `${srv.origin}/healthz`)).json.memory;
  const start = await health();
  assert.ok(start.rssKb > 0 && Number.isInteger(start.heapTrims));
  // a burst: three transactions of 1,500 Patients, each parsed into a tree of several MB
  for (let b = 0; b < 3; b++) {
    const entry = Array.from({ length: 1500 }, (_, i) => ({
      fullUrl: `urn:uuid:${crypto.randomUUID()}`,
      resource: { resourceType: 'Patient', name: [{ family: `Heap${b}x${i}`, given: ['Burst', 'Test'] }],
        text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${'burst '.repeat(60)}</div>` } },
      request: { method: 'POST', url: 'Patient' },
    }));
    const r = await c.post('', { resourceType: 'Bundle', type: 'transaction', entry });
    assert.equal(r.status, 200);
  }
  // no trim can have followed the burst yet (that takes a quiet second); one after the start may have
  const peak = await health();
  // health probes are not load: polling must not keep the trim from happening (bounded: 10 s)
  let m = peak;
  for (let i = 0; i < 50 * SLOW && m.heapTrims === peak.heapTrims; i++) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    m = await health();
  }
  assert.ok(m.heapTrims > peak.heapTrims, `the heap was trimmed after the burst (RSS ${start.rssKb} -> ${peak.rssKb} kB)`);
  // glibc's allocator gives the freed memory back; a sanitizer's allocator is another one
  if (SLOW === 1) assert.ok(m.rssKb < peak.rssKb, `RSS ${peak.rssKb} -> ${m.rssKb} kB`);
  const trims = m.heapTrims;
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.equal((await health()).heapTrims, trims, 'once per burst, not every idle second');
});

test('metadata: a CapabilityStatement for FHIR 4.0.1 listing Patient and its interactions', async () => {
  const r = await c.get('/metadata');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/fhir\+json/);
  const cs = r.json;
  assert.equal(cs.resourceType, 'CapabilityStatement');
  assert.equal(cs.fhirVersion, '4.0.1');
  assert.equal(cs.kind, 'instance');
  assert.ok(cs.format.includes('application/fhir+json') || cs.format.includes('json'));
  assert.ok(!cs.format.some((f) => /xml/.test(f)), 'XML is not claimed');
  const rest = cs.rest.find((x) => x.mode === 'server');
  assert.ok(rest, 'a server rest entry');
  const patient = rest.resource.find((x) => x.type === 'Patient');
  assert.ok(patient, 'Patient is listed');
  const codes = patient.interaction.map((i) => i.code);
  for (const want of ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create',
    'search-type'])
    assert.ok(codes.includes(want), `Patient interaction ${want} listed (got ${codes})`);
  assert.equal(patient.versioning, 'versioned-update');
  assert.equal(patient.updateCreate, true);
  assert.equal(patient.conditionalCreate, true);
  assert.ok(patient.searchParam.some((p) => p.name === 'identifier' && p.type === 'token'));
  const sys = rest.interaction.map((i) => i.code);
  for (const want of ['transaction', 'batch', 'history-system']) assert.ok(sys.includes(want), `system ${want}`);
  // every resource type of R4 (145 concrete types; no abstract Resource/DomainResource)
  const types = rest.resource.map((x) => x.type);
  assert.ok(types.length >= 140, `${types.length} types`);
  assert.ok(!types.includes('DomainResource'));
});

test('metadata is byte-identical across requests', async () => {
  const a = await c.get('/metadata');
  const b = await c.get('/metadata');
  assert.equal(a.text, b.text);
});

test('XML is refused with 406 and a JSON OperationOutcome (Accept and _format)', async () => {
  for (const accept of ['application/fhir+xml', 'application/xml', 'text/xml']) {
    const r = await c.get('/metadata', { headers: { Accept: accept } });
    assertOutcome(r, 406, `Accept ${accept}`);
  }
  for (const f of ['xml', 'application/fhir+xml', 'text/xml']) {
    const r = await c.get(`/metadata?_format=${encodeURIComponent(f)}`);
    assertOutcome(r, 406, `_format=${f}`);
  }
  const r = await c.get('/Patient?_format=xml');
  assertOutcome(r, 406, 'search with _format=xml');
});

test('JSON in any usual spelling is served', async () => {
  for (const accept of ['application/fhir+json', 'application/json', '*/*', 'application/fhir+json;fhirVersion=4.0',
    'application/fhir+xml;q=0.9, application/fhir+json']) {
    const r = await c.get('/metadata', { headers: { Accept: accept } });
    assert.equal(r.status, 200, `Accept ${accept}: ${r.text.slice(0, 200)}`);
  }
  for (const f of ['json', 'application/fhir+json', 'application/json']) {
    const r = await c.get(`/metadata?_format=${encodeURIComponent(f)}`);
    assert.equal(r.status, 200, `_format=${f}`);
  }
});

test('_pretty=true indents, and the content is the same', async () => {
  const plain = await c.get('/metadata');
  const pretty = await c.get('/metadata?_pretty=true');
  assert.equal(pretty.status, 200);
  assert.ok(pretty.text.includes('\n  '), 'indented');
  assert.ok(!plain.text.includes('\n'), 'plain is compact');
  assert.deepEqual(pretty.json, plain.json);
});

test('unknown resource type -> 404 OperationOutcome (read, search, create)', async () => {
  assertOutcome(await c.get('/Foo/1'), 404, 'read');
  assertOutcome(await c.get('/Foo'), 404, 'search');
  assertOutcome(await c.post('/Foo', { resourceType: 'Foo' }), 404, 'create');
  // abstract types are not resource endpoints either
  assertOutcome(await c.get('/DomainResource/1'), 404, 'abstract');
});

test('wrong method -> 405 OperationOutcome', async () => {
  assertOutcome(await c.del('/metadata'), 405, 'DELETE metadata');
  assertOutcome(await c.post('/metadata', { resourceType: 'Patient' }), 405, 'POST metadata');
  assertOutcome(await c.post('/Patient/abc', { resourceType: 'Patient', id: 'abc' }), 405, 'POST on an instance');
  assertOutcome(await c.put('/_history', { resourceType: 'Patient' }), 405, 'PUT system history');
  assertOutcome(await c.del('/Patient/abc/_history'), 405, 'DELETE instance history');
  assertOutcome(await c.put('/Patient', { resourceType: 'Patient' }), 405, 'PUT on a type without criteria');
  assertOutcome(await c.del('/Patient'), 405, 'DELETE on a type without criteria');
});

test('unsupported Content-Type -> 415 OperationOutcome, nothing written', async () => {
  const before_ = await c.historyTotal();
  for (const ct of ['application/fhir+xml', 'application/xml', 'text/plain', 'application/x-www-form-urlencoded']) {
    const r = await c.post('/Patient', '{"resourceType":"Patient"}', { headers: { 'Content-Type': ct } });
    assertOutcome(r, 415, `POST with ${ct}`);
  }
  const r = await c.put('/Patient/ct1', '{"resourceType":"Patient","id":"ct1"}', { headers: { 'Content-Type': 'text/xml' } });
  assertOutcome(r, 415, 'PUT with text/xml');
  assert.equal(await c.historyTotal(), before_);
});

test('paths outside /fhir -> 404 OperationOutcome', async () => {
  const r = await req('GET', `${srv.origin}/nope`);
  assertOutcome(r, 404, '/nope');
});
