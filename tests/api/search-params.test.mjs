// Search parameters and modifiers against the real server: chains (any depth), _has (nested),
// reference :identifier / :[type] / absolute URLs, :missing on every type, token :text :not
// :of-type and the terminology modifiers, string matching, uri :below/:above, composites,
// special, common parameters, _type, 1,000 OR values, strict and lenient handling.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome } from './lib/server.mjs';

let srv;
let c;
const ids = {};
const mk = async (res) => {
  const r = await c.post(`/${res.resourceType}`, res);
  assert.equal(r.status, 201, r.text);
  return r.json.id;
};
before(async () => {
  srv = await startServer();
  c = client(srv.base);
  ids.org = await mk({ resourceType: 'Organization', name: 'Acme Health', identifier: [{ system: 'http://org', value: 'O1' }] });
  ids.org2 = await mk({ resourceType: 'Organization', name: 'Zeta Care', partOf: { reference: `Organization/${ids.org}` } });
  ids.gp = await mk({ resourceType: 'Practitioner', name: [{ family: 'Jones' }] });
  ids.smith = await mk({ resourceType: 'Patient', name: [{ family: 'Smith', given: ['Zoë'] }], gender: 'female',
    identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000009',
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'NH' }] } },
    { system: 'http://hosp/mrn', value: 'M1', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } }],
    managingOrganization: { reference: `Organization/${ids.org2}` }, generalPractitioner: [{ reference: `Practitioner/${ids.gp}` }],
    meta: { tag: [{ system: 'http://tags', code: 't1' }], security: [{ system: 'http://sec', code: 'R' }],
      profile: ['http://example.org/StructureDefinition/p1'], source: 'http://src.example/a' } });
  ids.brown = await mk({ resourceType: 'Patient', name: [{ family: 'Brown' }], generalPractitioner: [{ reference: `Organization/${ids.org}` }] });
  ids.bare = await mk({ resourceType: 'Patient' });
  ids.o1 = await mk({ resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${ids.smith}` },
    code: { coding: [{ system: 'http://loinc.org', code: '2708-6', display: 'Oxygen saturation' }], text: 'SpO2 reading' },
    valueQuantity: { value: 92, system: 'http://unitsofmeasure.org', code: '%' },
    component: [{ code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 120, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
      { code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] }, valueQuantity: { value: 80, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }] });
  ids.o2 = await mk({ resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${ids.brown}` },
    code: { coding: [{ system: 'http://loinc.org', code: '2708-6' }] }, valueQuantity: { value: 97, system: 'http://unitsofmeasure.org', code: '%' },
    basedOn: [{ identifier: { system: 'http://orders', value: 'ORD-1' } }] });
  ids.o3 = await mk({ resourceType: 'Observation', status: 'cancelled', code: { text: 'no subject' } });
  ids.vs = await mk({ resourceType: 'ValueSet', status: 'active', url: 'http://acme.org/fhir/ValueSet/a/b' });
  ids.vs2 = await mk({ resourceType: 'ValueSet', status: 'active', url: 'http://acme.org/fhir/ValueSet/abc' });
  ids.vs3 = await mk({ resourceType: 'ValueSet', status: 'active', url: 'http://acme.org/fhir' });
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const found = async (q) => {
  const r = await c.get(q);
  assert.equal(r.status, 200, `${q}: ${r.text.slice(0, 400)}`);
  return (r.json.entry || []).filter((e) => e.search.mode === 'match').map((e) => e.resource.id).sort();
};
const same = async (q, want) => assert.deepEqual(await found(q), [...want].sort(), q);

test('chaining to any depth, typed and untyped', async () => {
  await same('/Observation?subject:Patient.name=smith', [ids.o1]);
  await same('/Observation?subject.name=SMITH', [ids.o1]);
  await same('/Patient?general-practitioner.name=jones', [ids.smith]);
  await same('/Patient?general-practitioner.name=acme', [ids.brown]);
  await same('/Patient?general-practitioner:Practitioner.name=acme', []);
  await same('/Observation?subject:Patient.organization.name=zeta', [ids.o1]);
  await same('/Observation?subject:Patient.organization.partof.name=acme', [ids.o1]);
  await same(`/Observation?subject:Patient.organization.partof.identifier=${encodeURIComponent('http://org|O1')}`, [ids.o1]);
  assertOutcome(await c.get('/Observation?subject:Patient.nosuch=1'), 400, 'unknown chained parameter');
});

test('_has, nested, and combined with chains', async () => {
  await same('/Patient?_has:Observation:subject:code=2708-6', [ids.smith, ids.brown]);
  await same('/Patient?_has:Observation:subject:value-quantity=lt95', [ids.smith]);
  await same('/Organization?_has:Patient:organization:_has:Observation:subject:code=2708-6', [ids.org2]);
  await same('/Organization?_has:Organization:partof:_has:Patient:organization:name=smith', [ids.org]);
  await same('/Practitioner?_has:Patient:general-practitioner:_has:Observation:subject:status=final', [ids.gp]);
});

test('reference forms: Type/id, id, :[type], absolute URL of this server, :identifier, :missing', async () => {
  await same(`/Observation?subject=Patient/${ids.smith}`, [ids.o1]);
  await same(`/Observation?subject=${ids.smith}`, [ids.o1]);
  await same(`/Observation?subject:Patient=${ids.smith}`, [ids.o1]);
  await same(`/Observation?subject:Group=${ids.smith}`, []);
  await same(`/Observation?subject=${encodeURIComponent(`${srv.base}/Patient/${ids.smith}`)}`, [ids.o1]);
  await same(`/Observation?subject=${encodeURIComponent(`http://elsewhere.example/fhir/Patient/${ids.smith}`)}`, []);
  await same(`/Observation?based-on:identifier=${encodeURIComponent('http://orders|ORD-1')}`, [ids.o2]);
  await same('/Observation?based-on:identifier=ORD-1', [ids.o2]);
  await same(`/Observation?based-on:identifier=${encodeURIComponent('http://other|ORD-1')}`, []);
  await same('/Observation?subject:missing=true', [ids.o3]);
  await same('/Observation?subject:missing=false', [ids.o1, ids.o2]);
});

test(':missing on every parameter type', async () => {
  await same('/Patient?name:missing=true', [ids.bare]);                 // string
  await same('/Patient?gender:missing=false', [ids.smith]);             // token
  await same('/Patient?general-practitioner:missing=true', [ids.bare]); // reference
  await same('/Patient?birthdate:missing=false', []);                   // date
  await same('/Observation?value-quantity:missing=true', [ids.o3]);     // quantity
  await same('/ValueSet?url:missing=false', [ids.vs, ids.vs2, ids.vs3]); // uri
  await same('/Observation?code-value-quantity:missing=false', [ids.o1, ids.o2]); // composite
  const n = await c.count('/RiskAssessment?probability:missing=true');   // number
  assert.equal(n, 0);
});

test('token :text, :not, :of-type; :in/:not-in/:above/:below answer 400 until terminology exists', async () => {
  await same('/Observation?code:text=spo2', [ids.o1]);
  await same('/Observation?code:text=oxygen', [ids.o1]);
  await same('/Observation?code:not=2708-6', [ids.o3]);
  await same('/Observation?status:not=final', [ids.o3]);
  await same(`/Patient?identifier:of-type=${encodeURIComponent('http://terminology.hl7.org/CodeSystem/v2-0203|MR|M1')}`, [ids.smith]);
  await same(`/Patient?identifier:of-type=${encodeURIComponent('http://terminology.hl7.org/CodeSystem/v2-0203|NH|M1')}`, []);
  for (const m of ['in', 'not-in', 'above', 'below']) {
    const oo = assertOutcome(await c.get(`/Observation?code:${m}=http://loinc.org`), 400, m);
    assert.ok(oo.issue[0].diagnostics.includes('terminology'), oo.issue[0].diagnostics);
  }
});

test('token on a bound code uses its implied system: system|code, code, system|', async () => {
  const gender = encodeURIComponent('http://hl7.org/fhir/administrative-gender|female');
  await same(`/Patient?gender=${gender}`, [ids.smith]);
  await same('/Patient?gender=female', [ids.smith]);
  await same(`/Patient?gender=${encodeURIComponent('http://hl7.org/fhir/administrative-gender|')}`, [ids.smith]);
  await same(`/Patient?gender=${encodeURIComponent('http://other.example/gender|female')}`, []);
  await same(`/Observation?status=${encodeURIComponent('http://hl7.org/fhir/observation-status|cancelled')}`, [ids.o3]);
});

test('string: case- and accent-insensitive starts-with, :exact, :contains', async () => {
  await same('/Patient?given=zoe', [ids.smith]);
  await same('/Patient?given=ZOË', [ids.smith]);
  await same('/Patient?family=smi', [ids.smith]);
  await same('/Patient?family=mith', []);
  await same('/Patient?family:contains=mit', [ids.smith]);
  await same('/Patient?family:exact=Smith', [ids.smith]);
  await same('/Patient?family:exact=smith', []);
  await same('/Patient?given:exact=Zoe', []);
});

test('uri: exact, :below on path segments, :above', async () => {
  await same('/ValueSet?url=http://acme.org/fhir/ValueSet/a/b', [ids.vs]);
  await same('/ValueSet?url:below=http://acme.org/fhir/ValueSet/a', [ids.vs]);
  await same('/ValueSet?url:below=http://acme.org/fhir', [ids.vs, ids.vs2, ids.vs3]);
  await same('/ValueSet?url:above=http://acme.org/fhir/ValueSet/a/b/c', [ids.vs, ids.vs3]);
  await same('/ValueSet?url:above=http://acme.org/fhir/ValueSet/abcd', [ids.vs3]);
});

test('composite parameters join the components of one value', async () => {
  await same(`/Observation?code-value-quantity=${encodeURIComponent('http://loinc.org|2708-6$lt93')}`, [ids.o1]);
  await same(`/Observation?code-value-quantity=${encodeURIComponent('2708-6$gt93')}`, [ids.o2]);
  await same(`/Observation?component-code-value-quantity=${encodeURIComponent('8480-6$gt100')}`, [ids.o1]);
  // the parts must belong to the same component: 8462-4 is 80, not > 100
  await same(`/Observation?component-code-value-quantity=${encodeURIComponent('8462-4$gt100')}`, []);
  await same(`/Observation?component-code-value-quantity=${encodeURIComponent('8462-4$gt100,8480-6$gt100')}`, [ids.o1]);
  assertOutcome(await c.get('/Observation?code-value-quantity=2708-6'), 400, 'missing component');
});

// combo-* parameters store no rows of their own: they search the rows of the parameters whose
// union they are (combo-code = code | component-code; docs/search.md, "Indexes").
test('combo-* parameters: the code or a component, one value of either', async () => {
  await same('/Observation?combo-code=8480-6', [ids.o1]);                       // a component's code
  await same(`/Observation?combo-code=${encodeURIComponent('http://loinc.org|2708-6')}`, [ids.o1, ids.o2]); // the code
  await same('/Observation?combo-code=8480-6,nope', [ids.o1]);
  await same('/Observation?combo-code:not=8480-6&status=final', [ids.o2]);
  await same('/Observation?combo-code:text=oxygen', [ids.o1]);
  await same('/Observation?combo-code:missing=true', []); // o3's code has text only: still a code
  await same('/Observation?combo-value-quantity=gt110', [ids.o1]);              // component 120
  await same('/Observation?combo-value-quantity=97', [ids.o2]);                 // the value
  await same(`/Observation?combo-value-quantity=${encodeURIComponent('0.97||1')}`, []); // 1 is not %'s canonical
  await same(`/Observation?combo-value-quantity=${encodeURIComponent('120|http://unitsofmeasure.org|mm[Hg]')}`, [ids.o1]);
  await same('/Observation?combo-value-quantity:missing=true', [ids.o3]);
  await same(`/Observation?combo-code-value-quantity=${encodeURIComponent('2708-6$gt93')}`, [ids.o2]);
  await same(`/Observation?combo-code-value-quantity=${encodeURIComponent('8480-6$gt100')}`, [ids.o1]);
  // one value of either: the top-level code with a component's value does not match
  await same(`/Observation?combo-code-value-quantity=${encodeURIComponent('2708-6$gt100')}`, []);
  await same(`/Observation?combo-code-value-quantity=${encodeURIComponent('8462-4$gt100')}`, []);
  await same('/Observation?combo-code-value-quantity:missing=false', [ids.o1, ids.o2]);
  // exact totals, each resource once although o1 has rows under both parameters
  const t = await c.get(`/Observation?combo-code=${encodeURIComponent('http://loinc.org|2708-6')}&_summary=count`);
  assert.equal(t.json.total, 2);
  const t2 = await c.get('/Observation?combo-code:missing=false&_summary=count');
  assert.equal(t2.json.total, 3);
  const sorted = await c.get('/Observation?status=final&_sort=-combo-value-quantity');
  assert.deepEqual(sorted.json.entry.map((e) => e.resource.id), [ids.o1, ids.o2]);
  const asc = await c.get('/Observation?status=final&_sort=combo-value-quantity');
  assert.deepEqual(asc.json.entry.map((e) => e.resource.id), [ids.o1, ids.o2]); // min: o1's 80 < o2's 97
});

test('special parameters answer 400, never silently ignored (even lenient)', async () => {
  assertOutcome(await c.get('/Location?near=42.25|-83.69|11.2|km'), 400, 'near');
  assertOutcome(await c.get('/Location?near=42.25|-83.69|11.2|km', { headers: { Prefer: 'handling=lenient' } }), 400, 'near lenient');
});

test('_tag, _profile, _security, _source, _type', async () => {
  await same(`/Patient?_tag=${encodeURIComponent('http://tags|t1')}`, [ids.smith]);
  await same('/Patient?_security=R', [ids.smith]);
  await same('/Patient?_profile=http://example.org/StructureDefinition/p1', [ids.smith]);
  await same('/Patient?_source=http://src.example/a', [ids.smith]);
  await same(`/?_type=Patient,Organization&_tag=${encodeURIComponent('http://tags|t1')}`, [ids.smith]);
  const r = await c.get('/?_type=Observation,ValueSet&_summary=count');
  assert.equal(r.json.total, 6);
  assertOutcome(await c.get('/?_type=Nope'), 400, 'bad _type');
});

test('1,000 OR values in one parameter', async () => {
  const vals = Array.from({ length: 999 }, (_, i) => `x${i}`).concat([ids.o2]);
  const r = await c.req('POST', '/Observation/_search', { body: `_id=${vals.join(',')}`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 200, r.text.slice(0, 300));
  assert.deepEqual(r.json.entry.map((e) => e.resource.id), [ids.o2]);
  const codes = Array.from({ length: 999 }, (_, i) => `http://loinc.org|c${i}`).concat(['http://loinc.org|2708-6']);
  const r2 = await c.req('POST', '/Observation/_search', { body: `code=${encodeURIComponent(codes.join(','))}&_summary=count`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r2.status, 200, r2.text.slice(0, 300));
  assert.equal(r2.json.total, 2);
});

test('unknown parameters: 400 when strict, ignored when lenient with the self link showing what was applied', async () => {
  const oo = assertOutcome(await c.get('/Patient?foo=bar&family=smith'), 400, 'strict');
  assert.ok(oo.issue[0].diagnostics.includes('foo'));
  const r = await c.get('/Patient?foo=bar&family=smith', { headers: { Prefer: 'handling=lenient' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.entry.map((e) => e.resource.id), [ids.smith]);
  const self = r.json.link.find((l) => l.relation === 'self').url;
  assert.ok(self.includes('family=smith') && !self.includes('foo'), self);
  assertOutcome(await c.get('/Patient?foo=bar', { headers: { Prefer: 'handling=strict' } }), 400, 'explicit strict');
});

test('quantity: UCUM units converted within a dimension (mg/g/kg, Cel/[degF], mm[Hg]/kPa), never mmol/L to mg/dL', async () => {
  const U = 'http://unitsofmeasure.org';
  const q = (value, code, text) => mk({ resourceType: 'Observation', status: 'final', code: { text },
    valueQuantity: { value, system: U, code } });
  const mass = await q(5000, 'mg', 'ucum-mass');
  const temp = await q(98.6, '[degF]', 'ucum-temp');
  const bp = await q(120, 'mm[Hg]', 'ucum-bp');
  const glu = await q(5.5, 'mmol/L', 'ucum-glu');
  await same(`/Observation?value-quantity=${encodeURIComponent(`5|${U}|g`)}`, [mass]);
  await same(`/Observation?value-quantity=${encodeURIComponent(`0.005|${U}|kg`)}`, [mass]);
  await same(`/Observation?value-quantity=${encodeURIComponent(`5000|${U}|mg`)}`, [mass]);
  await same(`/Observation?value-quantity=${encodeURIComponent('gt4||g')}`, [mass]);
  await same(`/Observation?value-quantity=${encodeURIComponent(`37|${U}|Cel`)}`, [temp]);
  await same(`/Observation?value-quantity=${encodeURIComponent(`gt38|${U}|Cel`)}`, []);
  await same(`/Observation?value-quantity=${encodeURIComponent(`ge15|${U}|kPa`)}`, [bp]);
  await same(`/Observation?value-quantity=${encodeURIComponent(`gt16.1|${U}|kPa`)}`, []);
  await same(`/Observation?value-quantity=${encodeURIComponent(`5.5|${U}|mmol/L`)}`, [glu]);
  await same(`/Observation?value-quantity=${encodeURIComponent(`5500|${U}|umol/L`)}`, [glu]);
  await same(`/Observation?value-quantity=${encodeURIComponent(`99|${U}|mg/dL`)}`, []);
  // a unit Bevan does not convert still matches as written
  const bpm = await mk({ resourceType: 'Observation', status: 'final', code: { text: 'hr' },
    valueQuantity: { value: 72, system: U, code: '/min' } });
  await same(`/Observation?value-quantity=${encodeURIComponent(`72|${U}|/min`)}`, [bpm]);
});
