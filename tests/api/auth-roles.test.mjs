// Staff access (domain.md §6.1): roles from the token and the policy, legitimate relationships
// (registered GP organisation, CareTeam, EpisodeOfCare, referral), sensitivity labels,
// break-glass (time-boxed, persisted, audited with BTG, a Task for the privacy officer), the audit
// trail for privacy officers and patients, proxy access through an active Consent, policy files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, runBevan, tempDir, SLOW } from './lib/server.mjs';
import { authKit } from './lib/auth.mjs';

let srv, kit, sys, data;
const U = `rl${process.pid}${Date.now().toString(36)}`;
const P1 = `${U}-p1`, P2 = `${U}-p2`, ORG = `${U}-gp`, ORG2 = `${U}-other`;
const DR = { gp: `${U}-drgp`, ct: `${U}-drct`, ref: `${U}-drref`, eoc: `${U}-dreoc`, none: `${U}-drnone`, ward: `${U}-drward` };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function put(res) {
  const r = await sys.put(`/${res.resourceType}/${res.id}`, res);
  assert.ok(r.status === 201 || r.status === 200, `${res.resourceType}/${res.id}: ${r.text}`);
}

const staff = (dr, o = {}) => kit.as(kit.staff({ user: `Practitioner/${DR[dr]}`, org: o.org, role: o.role, scope: o.scope }),
  o.headers);

before(async () => {
  data = tempDir('bevan-roles-');
  srv = await startServer({ auth: true, data, keepData: true });
  kit = await authKit(srv);
  sys = kit.as(kit.system());
  for (const id of [ORG, ORG2]) await put({ resourceType: 'Organization', id, name: id });
  for (const id of Object.values(DR)) await put({ resourceType: 'Practitioner', id, name: [{ family: id }] });
  await put({ resourceType: 'Patient', id: P1, name: [{ family: `One${U}` }], generalPractitioner: [{ reference: `Organization/${ORG}` }] });
  await put({ resourceType: 'Patient', id: P2, name: [{ family: `Two${U}` }], generalPractitioner: [{ reference: `Organization/${ORG2}` }] });
  for (const pid of [P1, P2]) {
    await put({ resourceType: 'Observation', id: `${pid}-obs`, status: 'final', code: { text: 'pulse' }, subject: { reference: `Patient/${pid}` } });
    await put({ resourceType: 'Condition', id: `${pid}-hiv`, code: { text: 'hiv' }, subject: { reference: `Patient/${pid}` },
      meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'HIV' }] } });
    await put({ resourceType: 'Condition', id: `${pid}-plain`, code: { text: 'asthma' }, subject: { reference: `Patient/${pid}` } });
    await put({ resourceType: 'Appointment', id: `${pid}-appt`, status: 'booked',
      participant: [{ actor: { reference: `Patient/${pid}` }, status: 'accepted' }] });
  }
  await put({ resourceType: 'CareTeam', id: `${U}-ct`, subject: { reference: `Patient/${P1}` },
    participant: [{ member: { reference: `Practitioner/${DR.ct}` } }] });
  await put({ resourceType: 'ServiceRequest', id: `${U}-sr`, status: 'active', intent: 'order', subject: { reference: `Patient/${P1}` },
    performer: [{ reference: `Practitioner/${DR.ref}` }] });
  await put({ resourceType: 'EpisodeOfCare', id: `${U}-eoc`, status: 'active', patient: { reference: `Patient/${P1}` },
    careManager: { reference: `Practitioner/${DR.eoc}` } });
  // a virtual-ward team (no patient of its own) and P2's care plan naming it
  await put({ resourceType: 'CareTeam', id: `${U}-ward`, participant: [{ member: { reference: `Practitioner/${DR.ward}` } }] });
  await put({ resourceType: 'CarePlan', id: `${U}-cp`, status: 'active', intent: 'plan', subject: { reference: `Patient/${P2}` },
    careTeam: [{ reference: `CareTeam/${U}-ward` }] });
});

after(async () => { if (srv) await srv.stop(); });

test('clinician: relationship through the registered GP organisation; none gives 403 naming break-glass', async () => {
  const c = staff('gp', { org: `Organization/${ORG}` });
  assert.equal((await c.get(`/Observation/${P1}-obs`)).status, 200);
  assert.equal((await c.get(`/Condition/${P1}-hiv`)).status, 200, 'clinicians see labelled entries');
  assert.equal((await c.get(`/Patient/${P1}/$everything`)).status, 200);
  const s = await c.get(`/Observation?patient=${P1}`);
  assert.equal(s.status, 200);
  assert.equal(s.json.entry.length, 1);
  const d = await c.get(`/Observation/${P2}-obs`);
  assert.equal(d.status, 403, d.text);
  assert.match(d.json.issue[0].diagnostics, /X-Break-Glass-Reason/);
  assert.equal((await c.get(`/Observation?patient=${P2}`)).status, 403);
  assert.equal((await c.get(`/Patient/${P2}/$everything`)).status, 403);
  assert.equal((await c.get(`/Patient/${P2}`)).status, 200, 'demographics without a relationship');
  const all = await c.get('/Observation?_count=200');
  assert.equal(all.status, 200, 'a staff search without a patient is filtered to related patients');
  assert.ok(all.json.entry.length >= 1);
  assert.ok(all.json.entry.every((e) => e.resource.subject.reference === `Patient/${P1}`), 'only related patients');
  const cnt = await c.get('/Observation?_summary=count');
  assert.equal(cnt.json.total, all.json.entry.length, 'counts are filtered too');
  const demo = await c.get(`/Patient?name=Two${U}`);
  assert.equal(demo.status, 200, 'demographics can be searched to find a patient');
  assert.equal(demo.json.entry.length, 1);
  assert.equal((await c.get(`/Patient?_has:Observation:subject:code=x`)).status, 403, 'no _has oracle for staff');
  const inc = await c.get(`/Patient?name=Two${U}&_revinclude=Observation:subject`);
  assert.equal(inc.status, 200);
  assert.ok(!inc.text.includes(`${P2}-obs`), 'includes are checked record by record');
  // writes need the relationship too
  const ok = await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'bp' }, subject: { reference: `Patient/${P1}` } });
  assert.equal(ok.status, 201, ok.text);
  const no = await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'bp' }, subject: { reference: `Patient/${P2}` } });
  assert.equal(no.status, 403, no.text);
  // clinicians may label
  const lab = await c.post('/Condition', { resourceType: 'Condition', code: { text: 'x' }, subject: { reference: `Patient/${P1}` },
    meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] } });
  assert.equal(lab.status, 201, lab.text);
});

test('relationship through a care plan\'s team (virtual ward): reads and filtered searches', async () => {
  const w = staff('ward');
  assert.equal((await w.get(`/Observation/${P2}-obs`)).status, 200);
  assert.equal((await w.get(`/Observation/${P1}-obs`)).status, 403);
  const s = await w.get('/Observation?_count=200');
  assert.equal(s.status, 200, s.text);
  assert.deepEqual([...new Set(s.json.entry.map((e) => e.resource.subject.reference))], [`Patient/${P2}`]);
  const cp = await w.get(`/CarePlan?care-team=CareTeam/${U}-ward&_include=CarePlan:subject`);
  assert.equal(cp.status, 200, cp.text);
  assert.ok(cp.json.entry.some((e) => e.resource.id === P2));
  assert.equal((await staff('none').get('/Observation?_summary=count')).json.total, 0, 'no relationship, nothing');
  // the board's ward-level searches, with a user and an organisation (regression: a 500 "parser stack
  // overflow" when every compartment parameter was chained to the relationship search)
  const wo = staff('ward', { org: `Organization/${ORG2}` });
  for (const q of ['/Observation?_count=200', '/Observation?_lastUpdated=gt2000-01-01&_sort=_lastUpdated&_count=500',
    '/Task?_count=50', '/Condition?_summary=count']) {
    const r = await wo.get(q);
    assert.equal(r.status, 200, `${q}: ${r.text.slice(0, 300)}`);
  }
  const teams = await w.get('/CareTeam?_count=50');
  assert.equal(teams.status, 200, teams.text);
  assert.ok(teams.json.entry.some((e) => e.resource.id === `${U}-ward`), 'a member finds the ward team it belongs to');
});

test('a conditional create in a transaction never hands back a match the user may not read', async () => {
  const bundle = (who) => ({ resourceType: 'Bundle', type: 'transaction', entry: [{
    fullUrl: 'urn:uuid:6a1c2f3e-0000-4000-8000-000000000001',
    resource: { resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: `Patient/${P1}` } },
    request: { method: 'POST', url: 'Observation', ifNoneExist: `_id=${P1}-obs` } }] });
  const denied = await staff('none').post('/', bundle());
  assert.ok([403, 404].includes(denied.status), `${denied.status} ${denied.text.slice(0, 300)}`);
  assert.ok(!denied.text.includes(`"id":"${P1}-obs"`), 'the existing resource leaked');
  const allowed = await staff('ct').post('/', bundle());
  assert.equal(allowed.status, 200, allowed.text.slice(0, 300));
  assert.equal(allowed.json.entry[0].response.status.split(' ')[0], '200');
});

test('relationship through a CareTeam, an EpisodeOfCare and a referral; none without', async () => {
  assert.equal((await staff('ct').get(`/Observation/${P1}-obs`)).status, 200);
  assert.equal((await staff('eoc').get(`/Observation/${P1}-obs`)).status, 200);
  assert.equal((await staff('ref').get(`/Observation/${P1}-obs`)).status, 200);
  assert.equal((await staff('ct').get(`/Observation/${P2}-obs`)).status, 403);
  assert.equal((await staff('none').get(`/Observation/${P1}-obs`)).status, 403);
  assert.equal((await staff('none', { org: `Organization/${ORG2}` }).get(`/Observation/${P1}-obs`)).status, 403);
});

test('roles: care worker does not see sensitive labels; administrative reaches appointments only; privacy officer the audit', async () => {
  const cw = staff('gp', { org: `Organization/${ORG}`, role: 'care-worker' });
  assert.equal((await cw.get(`/Condition/${P1}-plain`)).status, 200);
  assert.equal((await cw.get(`/Condition/${P1}-hiv`)).status, 403);
  const cs = await cw.get(`/Condition?patient=${P1}`);
  assert.equal(cs.status, 200);
  const got = cs.json.entry.map((e) => e.resource.id);
  assert.ok(got.includes(`${P1}-plain`) && !got.includes(`${P1}-hiv`), JSON.stringify(got));
  assert.ok(!(await cw.get(`/Patient/${P1}/$everything`)).text.includes(`${P1}-hiv`));
  const lab = await cw.post('/Condition', { resourceType: 'Condition', code: { text: 'x' }, subject: { reference: `Patient/${P1}` },
    meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }] } });
  assert.equal(lab.status, 403, 'a care worker may not set labels');
  const adm = staff('gp', { org: `Organization/${ORG}`, role: 'administrative' });
  assert.equal((await adm.get(`/Appointment?patient=${P1}`)).status, 200);
  assert.equal((await adm.get(`/Appointment/${P1}-appt`)).status, 200);
  assert.equal((await adm.get(`/Patient/${P1}`)).status, 200);
  assert.equal((await adm.get(`/Observation/${P1}-obs`)).status, 403);
  assert.equal((await adm.get(`/Observation?patient=${P1}`)).status, 403);
  const clin = staff('gp', { org: `Organization/${ORG}` });
  assert.equal((await clin.get(`/AuditEvent?patient=${P1}`)).status, 403, 'only a privacy officer reads the audit trail');
  const po = staff('none', { role: 'privacy-officer' });
  const au = await po.get(`/AuditEvent?patient=${P1}&_count=200`);
  assert.equal(au.status, 200, au.text);
  assert.ok(au.json.entry.length > 0);
  assert.equal((await po.get(`/Observation/${P1}-obs`)).status, 403);
  assert.equal((await po.put(`/AuditEvent/${au.json.entry[0].resource.id}`, au.json.entry[0].resource)).status, 403);
  assert.equal((await po.del(`/AuditEvent/${au.json.entry[0].resource.id}`)).status, 403);
  assert.equal((await sys.del(`/AuditEvent/${au.json.entry[0].resource.id}`)).status, 403, 'not even a system client');
  const unknown = staff('gp', { role: 'wizard' });
  assert.equal((await unknown.get(`/Patient/${P1}`)).status, 403);
});

test('audit: every access allowed or denied, writes in their transaction, the patient sees who viewed the record', async () => {
  const po = staff('none', { role: 'privacy-officer' });
  // a write is audited in its own transaction: visible at once
  const c = staff('gp', { org: `Organization/${ORG}` });
  const w = await c.post('/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'w' }, subject: { reference: `Patient/${P1}` } });
  assert.equal(w.status, 201);
  const wa = await po.get(`/AuditEvent?entity=Observation/${w.json.id}`);
  assert.equal(wa.status, 200, wa.text);
  assert.equal(wa.json.entry.length, 1, 'the create is audited with the write');
  const ev = wa.json.entry[0].resource;
  assert.equal(ev.action, 'C');
  assert.equal(ev.agent[0].who.reference, `Practitioner/${DR.gp}`);
  assert.ok(ev.entity.some((e) => e.what && e.what.reference === `Patient/${P1}`));
  // reads and denials within the bound
  await c.get(`/Observation/${P1}-obs`);
  await staff('none').get(`/Observation/${P1}-obs`);
  let found = null;
  for (let i = 0; i < 50 && !found; i++) {
    const r = await po.get(`/AuditEvent?patient=${P1}&_count=500`);
    const evs = r.json.entry.map((e) => e.resource);
    const read = evs.find((e) => e.action === 'R' && e.outcome === '0' && e.agent[0].who?.reference === `Practitioner/${DR.gp}`);
    const denied = evs.find((e) => e.outcome === '4' && e.agent[0].who?.reference === `Practitioner/${DR.none}` &&
      e.entity?.some((x) => x.what?.reference === `Observation/${P1}-obs`) && /relationship/.test(e.outcomeDesc || ''));
    if (read && denied) found = { read, denied };
    else await sleep(100 * SLOW);
  }
  assert.ok(found, 'read and denial audited');
  assert.equal(found.read.subtype[0].code, 'read');
  assert.ok(found.denied.outcomeDesc.includes('relationship'));
  // the patient's own view: staff access yes, its own access no
  const me = kit.as(kit.patient(P1));
  await me.get(`/Patient/${P1}`);
  await sleep(1500 * SLOW);
  const mine = await me.get(`/AuditEvent?patient=${P1}&_count=500`);
  assert.equal(mine.status, 200, mine.text);
  const evs = mine.json.entry.map((e) => e.resource);
  assert.ok(evs.some((e) => e.agent[0].who?.reference === `Practitioner/${DR.gp}`), 'staff access is shown');
  assert.ok(!evs.some((e) => (e.agent[0].role || []).some((r) => r.text === 'patient')), 'own access is not');
  assert.ok(!evs.some((e) => e.agent[0].who?.identifier), 'system-internal access is not');
  const other = await me.get(`/AuditEvent?patient=${P2}`);
  assert.equal((other.json.entry || []).length, 0);
});

test('break-glass: reason header grants time-boxed access, audited BTG, a Task for the privacy officer; persists across restart', async () => {
  const none = staff('none');
  assert.equal((await none.get(`/Observation/${P1}-obs`)).status, 403);
  const bg = staff('none', { headers: { 'X-Break-Glass-Reason': 'unconscious in ED, no GP record' } });
  const r = await bg.get(`/Observation/${P1}-obs`);
  assert.equal(r.status, 200, r.text);
  // the grant holds for later requests without the header
  assert.equal((await none.get(`/Condition/${P1}-plain`)).status, 200);
  assert.equal((await none.get(`/Patient/${P1}/$everything`)).status, 200);
  // still nothing for another patient
  assert.equal((await none.get(`/Observation/${P2}-obs`)).status, 403);
  const po = staff('none', { role: 'privacy-officer' });
  const tasks = await po.get(`/Task?patient=${P1}&code=BTG`);
  assert.equal(tasks.status, 200, tasks.text);
  assert.equal(tasks.json.entry.length, 1);
  assert.match(tasks.json.entry[0].resource.description, /unconscious/);
  let btg = null;
  for (let i = 0; i < 50 && !btg; i++) {
    const a = await po.get(`/AuditEvent?patient=${P1}&_count=500`);
    btg = a.json.entry.map((e) => e.resource).find((e) => (e.purposeOfEvent || []).some((p) => p.coding[0].code === 'BTG'));
    if (!btg) await sleep(100 * SLOW);
  }
  assert.ok(btg, 'break-glass access audited with purpose BTG');
  // restart: the grant was persisted
  await srv.stop();
  srv = await startServer({ auth: true, data, keepData: true });
  kit = await authKit(srv);
  sys = kit.as(kit.system());
  assert.equal((await staff('none').get(`/Observation/${P1}-obs`)).status, 200);
});

test('proxy: a RelatedPerson acts for the patient only with an active Consent', async () => {
  const rp = `${U}-rp`;
  await put({ resourceType: 'RelatedPerson', id: rp, patient: { reference: `Patient/${P1}` } });
  const proxy = kit.as(kit.token({ scope: 'user/*.rs', fhirUser: `RelatedPerson/${rp}`, patient: P1 }));
  assert.equal((await proxy.get(`/Observation/${P1}-obs`)).status, 403, 'no Consent yet');
  await put({ resourceType: 'Consent', id: `${U}-consent`, status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'INFA' }] }],
    patient: { reference: `Patient/${P1}` }, policyRule: { text: 'proxy access' },
    provision: { type: 'permit', actor: [{ role: { text: 'proxy' }, reference: { reference: `RelatedPerson/${rp}` } }] } });
  assert.equal((await proxy.get(`/Observation/${P1}-obs`)).status, 200);
  assert.equal((await proxy.get(`/Observation/${P2}-obs`)).status, 404);
  const s = await proxy.get('/Observation');
  assert.ok(s.json.entry.every((e) => e.resource.subject.reference === `Patient/${P1}`));
  // withdrawn
  const cons = (await sys.get(`/Consent/${U}-consent`)).json;
  await put({ ...cons, status: 'inactive' });
  assert.equal((await proxy.get(`/Observation/${P1}-obs`)).status, 403);
});

test('policy file: a bad one stops the server; a custom one changes the defaults', async () => {
  const d = tempDir();
  const bad = join(d, 'bad.json');
  writeFileSync(bad, '{"roles": {"x": {"types": ["NotAType"]}}}');
  const r = await runBevan(['serve', '--listen', '127.0.0.1:0', '--data', join(d, 'data'), '--policy', bad], { timeoutMs: 20_000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /NotAType/);
  const good = join(d, 'policy.json');
  writeFileSync(good, JSON.stringify({ default_role: 'reader', roles: { reader: { types: ['Patient'], relationship: false, hidden_labels: [] } } }));
  const s = await startServer({ auth: true, args: ['--policy', good] });
  try {
    const k = await authKit(s);
    await k.as(k.system()).put(`/Patient/${P1}`, { resourceType: 'Patient', id: P1 });
    const c = k.as(k.staff({ user: 'Practitioner/x' }));
    assert.equal((await c.get(`/Patient/${P1}`)).status, 200, 'no relationship needed by this policy');
    assert.equal((await c.get(`/Observation?patient=${P1}`)).status, 403, 'Observation not in the role');
  } finally {
    await s.stop();
  }
});
