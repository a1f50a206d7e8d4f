// Virtual wards with authorization on (issue 5 "patient isolation"): a patient token posts its own
// readings (single and as a sitting's transaction) and they raise the ward's alert; it cannot post
// a reading for another patient (directly or inside a transaction), and it never sees the other
// patient's readings or alerts. The ward team member sees both patients' alerts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { authKit } from './lib/auth.mjs';
import { makeWard, makePatient, enrol, reading, until, ALERT } from './lib/ward.mjs';

let srv;
let kit;
let sys;
let ward;
let A;
let B;
const nurse = 'Practitioner/ward-nurse-1';

before(async () => {
  srv = await startServer({ auth: true });
  kit = await authKit(srv);
  sys = kit.as(kit.system());
  ward = await makeWard(sys);
  const ct = await sys.get(`/CareTeam/${ward}`);
  const team = { ...ct.json, participant: [{ member: { reference: nurse } }] };
  assert.equal((await sys.put(`/CareTeam/${ward}`, team)).status, 200);
  A = await makePatient(sys, 'Alpha');
  B = await makePatient(sys, 'Bravo');
  await enrol(sys, A, ward);
  await enrol(sys, B, ward);
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const alertsFor = async (c, pid) => {
  const r = await c.get(`/Task?patient=Patient/${pid}&_count=50`);
  return r.status === 200 ? (r.json.entry || []).map((e) => e.resource) : [];
};

test('a patient posts its own reading and the ward raises the alert', async () => {
  const pa = kit.as(kit.patient(A, 'patient/Observation.cruds patient/Task.rs patient/Flag.rs'));
  const r = await pa.post('/Observation', reading.spo2(A, 91));
  assert.equal(r.status, 201, r.text);
  const bundle = { resourceType: 'Bundle', type: 'transaction', entry: [reading.spo2(A, 90), reading.pulse(A, 80)].map((res) => ({
    resource: res, request: { method: 'POST', url: 'Observation' } })) };
  const t = await pa.post('/', bundle);
  assert.equal(t.status, 200, t.text);
  const staff = kit.as(kit.staff({ user: nurse, role: 'clinician' }));
  const tasks = await until(async () => {
    const ts = await alertsFor(staff, A);
    return ts.some((x) => x.code?.coding?.some((c) => c.system === ALERT && c.code === 'spo2-red')) && ts;
  }, 'a red SpO2 alert visible to the ward team');
  assert.ok(tasks.length >= 1);
  const mine = await alertsFor(pa, A);
  assert.ok(mine.length >= 1, 'the patient can see its own alert Task');
});

test('a patient cannot post a reading for another patient, alone or in a transaction', async () => {
  const pa = kit.as(kit.patient(A, 'patient/Observation.cruds'));
  const before = (await sys.get(`/Observation?subject=Patient/${B}&_summary=count`)).json.total;
  const direct = await pa.post('/Observation', reading.spo2(B, 85));
  assert.ok([403, 404].includes(direct.status), `${direct.status} ${direct.text.slice(0, 200)}`);
  const bundle = { resourceType: 'Bundle', type: 'transaction', entry: [reading.spo2(A, 97), reading.spo2(B, 85)].map((res) => ({
    resource: res, request: { method: 'POST', url: 'Observation' } })) };
  const t = await pa.post('/', bundle);
  assert.ok(t.status >= 400 && t.status < 500, `${t.status} ${t.text.slice(0, 200)}`);
  assert.equal((await sys.get(`/Observation?subject=Patient/${B}&_summary=count`)).json.total, before, 'nothing stored for B');
});

test('a patient never sees another patient\'s readings or alerts; the ward team sees both', async () => {
  const staff = kit.as(kit.staff({ user: nurse, role: 'clinician' }));
  await sys.post('/Observation', reading.spo2(B, 90));
  await until(async () => (await alertsFor(staff, B)).length > 0, 'an alert for B');
  const pa = kit.as(kit.patient(A, 'patient/*.rs'));
  for (const q of [`/Observation?subject=Patient/${B}`, `/Task?patient=Patient/${B}`, '/Task?_count=100',
    `/Observation?_count=200`, `/CarePlan?care-team=CareTeam/${ward}`]) {
    const r = await pa.get(q);
    assert.ok(r.status === 200 || r.status === 403, `${q}: ${r.status}`);
    // (the self link repeats the query: look at the entries)
    assert.ok(!JSON.stringify(r.json.entry || []).includes(B), `${q} shows patient B`);
  }
  for (const t of await alertsFor(staff, B)) {
    const r = await pa.get(`/Task/${t.id}`);
    assert.ok([403, 404].includes(r.status), `B's alert Task read by A: ${r.status}`);
  }
  const board = await staff.get(`/CarePlan?care-team=CareTeam/${ward}&status=active&_include=CarePlan:subject`);
  assert.equal(board.status, 200, board.text);
  const subjects = board.json.entry.filter((e) => e.resource.resourceType === 'Patient').map((e) => e.resource.id).sort();
  assert.deepEqual(subjects, [A, B].sort());
});

test('patient tokens never read stored Bundles, Binaries or Subscriptions (they may hold any patient\'s data)', async () => {
  const b = await sys.post('/Bundle', { resourceType: 'Bundle', type: 'collection',
    entry: [{ resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${B}` } } }] });
  assert.equal(b.status, 201, b.text);
  const bin = await sys.post('/Binary', { resourceType: 'Binary', contentType: 'text/plain', data: Buffer.from(`about ${B}`).toString('base64') });
  assert.equal(bin.status, 201, bin.text);
  const pa = kit.as(kit.patient(A, 'patient/*.rs'));
  for (const q of [`/Bundle/${b.json.id}`, `/Binary/${bin.json.id}`]) assert.equal((await pa.get(q)).status, 404, q);
  for (const q of ['/Bundle', '/Binary', '/Subscription']) assert.equal((await pa.get(q)).status, 403, q);
  assert.equal((await pa.get(`/Patient/${A}`)).status, 200);
});
