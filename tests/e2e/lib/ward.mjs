// Seeds a virtual ward the way the care service stores one (the ward conventions in
// docs/web.md): a CareTeam, Patients with active CarePlans, vital-sign readings, and alerts as
// Flag + Task. Used by the browser test and the alert-latency bench.
import assert from 'node:assert/strict';

export const LOINC = 'http://loinc.org';
export const UCUM = 'http://unitsofmeasure.org';
export const ALERT_SYS = 'http://bevan.dev/fhir/CodeSystem/ward-alert';
export const EXT_PLAN = 'http://bevan.dev/fhir/StructureDefinition/monitoring-plan';

const vital = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }];

export function spo2Obs(pid, value, when = new Date()) {
  return { resourceType: 'Observation', status: 'final', category: vital,
    code: { coding: [{ system: LOINC, code: '59408-5' }, { system: LOINC, code: '2708-6' }] },
    subject: { reference: `Patient/${pid}` }, effectiveDateTime: when.toISOString(),
    valueQuantity: { value, unit: '%', system: UCUM, code: '%' } };
}
export function pulseObs(pid, value, when = new Date()) {
  return { resourceType: 'Observation', status: 'final', category: vital,
    code: { coding: [{ system: LOINC, code: '8867-4' }] }, subject: { reference: `Patient/${pid}` },
    effectiveDateTime: when.toISOString(), valueQuantity: { value, unit: '/min', system: UCUM, code: '/min' } };
}
/** One sitting (SpO2 + pulse) as a transaction Bundle. */
export function readingBundle(pid, spo2, pulse, when = new Date()) {
  return { resourceType: 'Bundle', type: 'transaction', entry: [
    { resource: spo2Obs(pid, spo2, when), request: { method: 'POST', url: 'Observation' } },
    { resource: pulseObs(pid, pulse, when), request: { method: 'POST', url: 'Observation' } }] };
}

export function carePlan(pid, wardId, days = 14) {
  const start = new Date(Date.now() - 3 * 86400000);
  return { resourceType: 'CarePlan', status: 'active', intent: 'plan',
    category: [{ coding: [{ system: 'http://bevan.dev/fhir/CodeSystem/care-plan-category', code: 'virtual-ward' }] }],
    subject: { reference: `Patient/${pid}` }, careTeam: [{ reference: `CareTeam/${wardId}` }],
    period: { start: start.toISOString(), end: new Date(start.getTime() + days * 86400000).toISOString() },
    extension: [{ url: EXT_PLAN, extension: [
      { url: 'readingsPerDay', valueInteger: 3 }, { url: 'readingTime', valueTime: '08:00:00' },
      { url: 'readingTime', valueTime: '13:00:00' }, { url: 'readingTime', valueTime: '18:00:00' },
      { url: 'durationDays', valueInteger: days }, { url: 'news2Scale', valueInteger: 1 },
      { url: 'spo2AmberAtOrBelow', valueInteger: 94 }, { url: 'spo2RedAtOrBelow', valueInteger: 92 }] }] };
}

/** An open alert: Flag + Task (requested) for the ward team. Returns {flag, task}. */
export async function raiseAlert(c, pid, wardId, code, priority = 'urgent') {
  const coding = { system: ALERT_SYS, code };
  const f = await c.post('/Flag', { resourceType: 'Flag', status: 'active', code: { coding: [coding], text: code },
    subject: { reference: `Patient/${pid}` } });
  assert.equal(f.status, 201, f.text);
  const t = await c.post('/Task', { resourceType: 'Task', status: 'requested', intent: 'order', priority,
    code: { coding: [coding], text: code }, focus: { reference: `Flag/${f.json.id}` }, for: { reference: `Patient/${pid}` },
    owner: { reference: `CareTeam/${wardId}` }, authoredOn: new Date().toISOString() });
  assert.equal(t.status, 201, t.text);
  return { flag: f.json, task: t.json };
}

/**
 * A ward with patients; each spec {family, given, spo2: [values oldest..newest], pulse}.
 * Readings are spread over the last days, the newest one `lastAgoMin` minutes ago (default 30).
 * Returns {ward, patients: [{id, family, ...spec}]}.
 */
export async function seedWard(c, name, specs) {
  const w = await c.post('/CareTeam', { resourceType: 'CareTeam', status: 'active', name,
    category: [{ coding: [{ system: 'http://bevan.dev/fhir/CodeSystem/care-team-category', code: 'virtual-ward' }] }] });
  assert.equal(w.status, 201, w.text);
  const patients = [];
  for (const s of specs) {
    const p = await c.post('/Patient', { resourceType: 'Patient', name: [{ family: s.family, given: [s.given || 'Test'] }], birthDate: '1950-01-01' });
    assert.equal(p.status, 201, p.text);
    const cp = await c.post('/CarePlan', carePlan(p.json.id, w.json.id));
    assert.equal(cp.status, 201, cp.text);
    const n = s.spo2.length;
    const lastAgo = (s.lastAgoMin ?? 30) * 60000;
    for (let i = 0; i < n; i++) {
      const when = new Date(Date.now() - lastAgo - (n - 1 - i) * 8 * 3600000);
      const r = await c.post('/', readingBundle(p.json.id, s.spo2[i], s.pulse ?? 80, when));
      assert.equal(r.status, 200, r.text);
    }
    patients.push({ ...s, id: p.json.id, careplan: cp.json.id });
  }
  return { ward: w.json, patients };
}
