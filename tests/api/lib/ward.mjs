// Helpers for the virtual-ward API tests (docs/ward.md conventions).
import assert from 'node:assert/strict';
import { SLOW } from './server.mjs';

export const CT_CAT = 'http://bevan.dev/fhir/CodeSystem/care-team-category';
export const CP_CAT = 'http://bevan.dev/fhir/CodeSystem/care-plan-category';
export const PLAN_EXT = 'http://bevan.dev/fhir/StructureDefinition/monitoring-plan';
export const ALERT = 'http://bevan.dev/fhir/CodeSystem/ward-alert';
export const BAND = 'http://bevan.dev/fhir/CodeSystem/news2-band';
const UCUM = 'http://unitsofmeasure.org';
const LOINC = 'http://loinc.org';
const SCT = 'http://snomed.info/sct';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll fn() (bounded) until it returns a truthy value; returns it, or fails with what. */
export async function until(fn, what, { ms = 15_000 } = {}) {
  const deadline = Date.now() + ms * SLOW;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

export async function makeWard(c, name = 'Virtual ward A') {
  const r = await c.post('/CareTeam', {
    resourceType: 'CareTeam', status: 'active', name,
    category: [{ coding: [{ system: CT_CAT, code: 'virtual-ward' }] }],
  });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

export async function makePatient(c, family = 'Ward') {
  const r = await c.post('/Patient', { resourceType: 'Patient', name: [{ family, given: ['Test'] }] });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

export function planBody(patient, ward, { start = new Date().toISOString(), subs = [] } = {}) {
  return {
    resourceType: 'CarePlan', status: 'active', intent: 'plan',
    category: [{ coding: [{ system: CP_CAT, code: 'virtual-ward' }] }],
    subject: { reference: `Patient/${patient}` },
    careTeam: [{ reference: `CareTeam/${ward}` }],
    period: { start },
    ...(subs.length ? { extension: [{ url: PLAN_EXT, extension: subs }] } : {}),
  };
}

export async function enrol(c, patient, ward, opts) {
  const r = await c.post('/CarePlan', planBody(patient, ward, opts));
  assert.equal(r.status, 201, r.text);
  return r.json;
}

const qty = (value, code) => ({ value, unit: code, system: UCUM, code });
const vs = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }];

function obs(patient, code, when, rest) {
  return {
    resourceType: 'Observation', status: 'final', category: vs, code,
    subject: { reference: `Patient/${patient}` }, effectiveDateTime: when,
    device: { display: 'Home pulse oximeter' },
    performer: [{ reference: `Patient/${patient}` }],
    ...rest,
  };
}

export const reading = {
  spo2: (p, v, when = new Date().toISOString()) => obs(p, { coding: [{ system: LOINC, code: '2708-6' }, { system: LOINC, code: '59408-5' }] }, when, { valueQuantity: qty(v, '%') }),
  pulse: (p, v, when = new Date().toISOString()) => obs(p, { coding: [{ system: LOINC, code: '8867-4' }] }, when, { valueQuantity: qty(v, '/min') }),
  rr: (p, v, when = new Date().toISOString()) => obs(p, { coding: [{ system: LOINC, code: '9279-1' }] }, when, { valueQuantity: qty(v, '/min') }),
  temp: (p, v, when = new Date().toISOString()) => obs(p, { coding: [{ system: LOINC, code: '8310-5' }] }, when, { valueQuantity: qty(v, 'Cel') }),
  bp: (p, s, d, when = new Date().toISOString()) => obs(p, { coding: [{ system: LOINC, code: '85354-9' }] }, when, {
    component: [
      { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: qty(s, 'mm[Hg]') },
      { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: qty(d, 'mm[Hg]') },
    ],
  }),
  acvpu: (p, v = 'A', when = new Date().toISOString()) => obs(p, { coding: [{ system: SCT, code: '1104441000000107' }] }, when, {
    valueCodeableConcept: { coding: [{ system: SCT, code: { A: '248234008', C: '130987000', V: '300202002', P: '450847001', U: '422768004' }[v] }] },
  }),
  airO2: (p, oxygen, when = new Date().toISOString()) => obs(p, { coding: [{ system: SCT, code: oxygen ? '371825009' : '722742002' }] }, when, {}),
};

/** One sitting's full NEWS2 set as a transaction Bundle. */
export function sitting(p, { rr, spo2, oxygen = false, sbp, pulse, acvpu = 'A', temp }, when = new Date().toISOString()) {
  const res = [reading.rr(p, rr, when), reading.spo2(p, spo2, when), reading.airO2(p, oxygen, when),
    reading.bp(p, sbp, Math.min(80, sbp - 10), when), reading.pulse(p, pulse, when), reading.acvpu(p, acvpu, when),
    reading.temp(p, temp, when)];
  return {
    resourceType: 'Bundle', type: 'transaction',
    entry: res.map((r) => ({ resource: r, request: { method: 'POST', url: 'Observation' } })),
  };
}

export async function tasks(c, patient) {
  const r = await c.get(`/Task?patient=Patient/${patient}&_count=100`);
  assert.equal(r.status, 200, r.text);
  return (r.json.entry || []).map((e) => e.resource).filter((t) => t.code?.coding?.[0]?.system === ALERT);
}

export async function flags(c, patient) {
  const r = await c.get(`/Flag?patient=Patient/${patient}&_count=100`);
  assert.equal(r.status, 200, r.text);
  return (r.json.entry || []).map((e) => e.resource);
}

export async function news2(c, patient) {
  const r = await c.get(`/Observation?subject=Patient/${patient}&code=http://snomed.info/sct|1104051000000101&_count=100`);
  assert.equal(r.status, 200, r.text);
  return (r.json.entry || []).map((e) => e.resource);
}

export const alertCode = (t) => t.code.coding[0].code;
