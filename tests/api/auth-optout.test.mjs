// National data opt-out (domain.md §5.4): a system client whose token states a secondary-use
// purpose (purpose_of_use HRESCH research, HOPERAT planning, ...) never sees patients with an active
// opt-out Consent — in searches, counts, reads and includes — while direct care is never filtered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { authKit } from './lib/auth.mjs';

let srv, kit, care, research;
const U = `oo${process.pid}${Date.now().toString(36)}`;
const IN = `${U}-in`, OUT = `${U}-out`;

before(async () => {
  srv = await startServer({ auth: true });
  kit = await authKit(srv);
  care = kit.as(kit.system('system/*.cruds'));
  research = kit.as(kit.token({ scope: 'system/*.rs', client_id: 'research-1', purpose_of_use: ['HRESCH'] }));
  for (const pid of [IN, OUT]) {
    assert.equal((await care.put(`/Patient/${pid}`, { resourceType: 'Patient', id: pid, name: [{ family: U }] })).status, 201);
    assert.equal((await care.put(`/Observation/${pid}-o`, { resourceType: 'Observation', id: `${pid}-o`, status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${pid}` } })).status, 201);
  }
  const consent = { resourceType: 'Consent', id: `${OUT}-optout`, status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${OUT}` }, policyRule: { text: 'National data opt-out' },
    provision: { type: 'deny', purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HRESCH' },
      { system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HOPERAT' }] } };
  const r = await care.put(`/Consent/${consent.id}`, consent);
  assert.equal(r.status, 201, r.text);
});

after(async () => { if (srv) await srv.stop(); });

test('secondary use leaves opted-out patients out of searches, counts, reads and includes', async () => {
  const ids = (r) => (r.json.entry || []).map((e) => e.resource.id).sort();
  assert.deepEqual(ids(await care.get(`/Patient?family=${U}`)), [IN, OUT].sort(), 'direct care sees everyone');
  const p = await research.get(`/Patient?family=${U}`);
  assert.equal(p.status, 200, p.text);
  assert.deepEqual(ids(p), [IN]);
  const cnt = await research.get(`/Patient?family=${U}&_summary=count`);
  assert.equal(cnt.json.total, 1);
  const o = await research.get(`/Observation?subject:Patient.family=${U}`);
  assert.equal(o.status, 200, o.text);
  assert.deepEqual(ids(o), [`${IN}-o`]);
  const inc = await research.get(`/Observation?_id=${IN}-o,${OUT}-o&_include=Observation:subject`);
  assert.deepEqual(ids(inc), [IN, `${IN}-o`].sort());
  assert.equal((await research.get(`/Patient/${OUT}`)).status, 404);
  assert.equal((await research.get(`/Observation/${OUT}-o`)).status, 404);
  assert.equal((await research.get(`/Observation/${IN}-o`)).status, 200);
  assert.equal((await research.get('/')).status, 403, 'a system-wide search cannot apply the opt-out');
  assert.equal((await research.get('/Observation/_history')).status, 403);
  // direct care is never filtered
  assert.equal((await care.get(`/Observation/${OUT}-o`)).status, 200);
  // withdrawing the opt-out brings the patient back
  const c = (await care.get(`/Consent/${OUT}-optout`)).json;
  assert.equal((await care.put(`/Consent/${OUT}-optout`, { ...c, status: 'inactive' })).status, 200);
  assert.deepEqual(ids(await research.get(`/Patient?family=${U}`)), [IN, OUT].sort());
});
