// The search oracle: hundreds of generated queries (fixed seed) over a `bevan demo` population,
// the Synthea sample bundles (when ../shared/data is present) and a few crafted resources (odd
// names, zones, periods, numbers, a deleted and an updated resource). Each query is evaluated here
// by a plain scan of the current resources (fetched from the server by walking every page),
// following the FHIR R4 search rules, and compared with what the server returns when every page
// of `_count=7` paging is walked: the same set of ids, no repeats, no stale versions, the right
// `total`, sort order for `_sort`, and the `_include`/`_revinclude` targets. Every difference is a
// failure, listed with the query and the ids concerned. See docs/search.md "Oracle".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, client, runBevan, tempDir, pool, SYNTHEA_DIR } from './lib/server.mjs';

const SEED = 20261206;
const DEMO_PATIENTS = 30;
const PAGE = 7;
const N_QUERIES = 420;
const synthea = existsSync(SYNTHEA_DIR);
if (!synthea) console.log(`# SKIP: ${SYNTHEA_DIR} is absent: the oracle runs over the demo population only`);

// ------------------------------------------------------------------ deterministic randomness
function mulberry32(a) {
  return () => {
    a |= 0; a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = mulberry32(SEED);
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
const chance = (p) => rnd() < p;
const uniq = (a) => [...new Set(a)];

// ------------------------------------------------------------------ value semantics
/** Case- and accent-insensitive form (ASCII case; Latin-1 and Latin Extended-A letters folded;
 * runs of white space become one space, none at the ends). Other characters are kept. */
const FOLD_SPECIAL = { ß: 'ss', æ: 'ae', Æ: 'ae', ø: 'o', Ø: 'o', ł: 'l', Ł: 'l', đ: 'd', Đ: 'd', ð: 'd', Ð: 'd',
  þ: 'th', Þ: 'th', œ: 'oe', Œ: 'oe', ĳ: 'ij', Ĳ: 'ij', ı: 'i', ħ: 'h', Ħ: 'h', ŧ: 't', Ŧ: 't', ŀ: 'l', Ŀ: 'l',
  ĸ: 'k', ŉ: 'n', ſ: 's', '×': '×', '÷': '÷' };
export function fold(s) {
  let out = '';
  for (const ch of String(s)) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out += ch.toLowerCase();
    else if (cp >= 0xC0 && cp <= 0x17F) out += FOLD_SPECIAL[ch] ?? ch.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
    else out += ch;
  }
  return out.replace(/[\s\u00a0\u2000-\u200a\u2007\u202f\u3000]+/g, ' ').trim();
}

/** [lo, hi] in ms of a FHIR date, dateTime or instant; no zone = UTC. */
export function dateRange(s) {
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.exec(s);
  if (!m) throw new Error(`bad date ${s}`);
  const [, y, mo, d, h, mi, sec, frac, tz] = m;
  const Y = Number(y);
  let lo;
  let hi;
  if (!mo) { lo = Date.UTC(Y, 0, 1); hi = Date.UTC(Y + 1, 0, 1) - 1; }
  else if (!d) { lo = Date.UTC(Y, mo - 1, 1); hi = Date.UTC(Y, Number(mo), 1) - 1; }
  else if (!h) { lo = Date.UTC(Y, mo - 1, d); hi = lo + 86400000 - 1; }
  else if (sec === undefined) { lo = Date.UTC(Y, mo - 1, d, h, mi); hi = lo + 60000 - 1; }
  else {
    const f = frac || '';
    lo = Date.UTC(Y, mo - 1, d, h, mi, sec, Number(f.slice(0, 3).padEnd(3, '0')));
    hi = lo + (f.length === 0 ? 1000 : f.length === 1 ? 100 : f.length === 2 ? 10 : 1) - 1;
  }
  if (tz && tz !== 'Z') {
    const off = (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6))) * (tz[0] === '+' ? 1 : -1) * 60000;
    lo -= off; hi -= off;
  }
  return { lo, hi };
}
const period = (p) => ({ lo: p.start ? dateRange(p.start).lo : -Infinity, hi: p.end ? dateRange(p.end).hi : Infinity });

const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'];
function splitPrefix(v) {
  const m = /^(eq|ne|gt|lt|ge|le|sa|eb|ap)(.*)$/.exec(v);
  return m ? [m[1], m[2]] : ['eq', v];
}
/** The date search rules of search.html#prefix: target t against the parameter range p. */
function dateOp(op, t, p) {
  const contains = t.lo >= p.lo && t.hi <= p.hi;
  switch (op) {
    case 'eq': return contains;
    case 'ne': return !contains;
    case 'gt': return t.hi > p.hi;
    case 'lt': return t.lo < p.lo;
    case 'ge': return t.hi > p.hi || contains;
    case 'le': return t.lo < p.lo || contains;
    case 'sa': return t.lo > p.hi;
    case 'eb': return t.hi < p.lo;
    case 'ap': return t.lo <= p.hi && t.hi >= p.lo;
    default: throw new Error(op);
  }
}
function dateParam(v) {
  const [op, s] = splitPrefix(v);
  const p = dateRange(s);
  if (op === 'ap') { // 10% of the distance from now, at least a day, either side
    const mid = p.lo / 2 + p.hi / 2;
    const gap = Math.max(Math.abs(mid - Date.now()) / 10, 86400000);
    p.lo -= gap; p.hi += gap;
  }
  return { op, p };
}
/** number/quantity: implicit precision range of the parameter value (half a unit of its last digit). */
function numParam(s) {
  const m = /^[+-]?\d+(?:\.(\d+))?$/.exec(s);
  if (!m) throw new Error(`bad number ${s}`);
  const v = Number(s);
  const half = 0.5 * 10 ** -(m[1] ? m[1].length : 0);
  return { v, lo: v - half, hi: v + half };
}
function numOp(op, x, q) {
  switch (op) {
    case 'eq': return x >= q.lo && x < q.hi;
    case 'ne': return !(x >= q.lo && x < q.hi);
    case 'gt': case 'sa': return x > q.v;
    case 'lt': case 'eb': return x < q.v;
    case 'ge': return x >= q.v;
    case 'le': return x <= q.v;
    case 'ap': {
      const d = Math.abs(q.v) * 0.1;
      return x >= Math.min(q.v - d, q.lo) && x <= Math.max(q.v + d, q.hi);
    }
    default: throw new Error(op);
  }
}
const UCUM = 'http://unitsofmeasure.org';
const UNITS = { kg: ['g', 1e3, 0], g: ['g', 1, 0], mg: ['g', 1e-3, 0], cm: ['m', 1e-2, 0], m: ['m', 1, 0], mm: ['m', 1e-3, 0],
  Cel: ['K', 1, 273.15], '[degF]': ['K', 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0], 'mm[Hg]': ['Pa', 133.322387415, 0],
  kPa: ['Pa', 1e3, 0], 'mmol/L': ['mol/L', 1e-3, 0], 'umol/L': ['mol/L', 1e-6, 0], '%': ['%', 1, 0] };
const canon = (code, x) => (UNITS[code] ? x * UNITS[code][1] + UNITS[code][2] : NaN);

// ------------------------------------------------------------------ what each parameter indexes
const arr = (x) => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);
const IMPLIED = {
  'Patient.gender': 'http://hl7.org/fhir/administrative-gender', 'Practitioner.gender': 'http://hl7.org/fhir/administrative-gender',
  'Observation.status': 'http://hl7.org/fhir/observation-status', 'Encounter.status': 'http://hl7.org/fhir/encounter-status',
  'AllergyIntolerance.criticality': 'http://hl7.org/fhir/allergy-intolerance-criticality',
  'AllergyIntolerance.category': 'http://hl7.org/fhir/allergy-intolerance-category',
  'MedicationRequest.status': 'http://hl7.org/fhir/CodeSystem/medicationrequest-status',
  'MedicationRequest.intent': 'http://hl7.org/fhir/CodeSystem/medicationrequest-intent',
  'Immunization.status': 'http://hl7.org/fhir/event-status', 'Procedure.status': 'http://hl7.org/fhir/event-status',
};
const tCode = (path) => (r) => {
  const [, el] = path.split('.');
  return arr(r[el]).map((c) => ({ system: IMPLIED[path] ?? null, code: String(c), texts: [] }));
};
const tCC = (get) => (r) => arr(get(r)).filter(Boolean).flatMap((cc) => {
  const codings = arr(cc.coding);
  const texts = [cc.text, ...codings.map((c) => c.display)].filter((t) => typeof t === 'string');
  if (!codings.length) return cc.text ? [{ system: undefined, code: undefined, texts }] : [];
  return codings.map((c) => ({ system: c.system ?? null, code: c.code, texts }));
});
const tCoding = (get) => (r) => arr(get(r)).filter(Boolean).map((c) => ({ system: c.system ?? null, code: c.code, texts: arr(c.display) }));
const tIdent = (get) => (r) => arr(get(r)).map((i) => ({ system: i.system ?? null, code: i.value, texts: arr(i.type?.text) }));
const tTelecom = (sys) => (r) => arr(r.telecom).filter((t) => !sys || t.system === sys)
  .map((t) => ({ system: null, code: t.value, texts: [] }));
const sName = (r) => arr(r.name).flatMap((n) => [n.family, ...arr(n.given), ...arr(n.prefix), ...arr(n.suffix), n.text]).filter(Boolean);
const sAddr = (get) => (r) => arr(r.address).flatMap((a) => arr(get(a))).filter(Boolean);
const dVal = (...keys) => (r) => keys.flatMap((k) => {
  const v = r[k];
  if (v === undefined) return [];
  if (typeof v === 'string') return [dateRange(v)];
  if (v.start || v.end) return [period(v)];
  return [];
});
const refs = (get, onlyType) => (r) => arr(get(r)).filter((x) => typeof x?.reference === 'string').map((x) => {
  const m = /^([A-Za-z]+)\/([^/]+)$/.exec(x.reference);
  return m ? { type: m[1], id: m[2] } : { url: x.reference };
}).filter((x) => !onlyType || x.type === onlyType);
const qty = (get) => (r) => arr(get(r)).filter((q) => typeof q?.value === 'number')
  .map((q) => ({ num: q.value, system: q.system ?? null, code: q.code ?? q.unit ?? null }));

const subjectPatient = refs((r) => r.subject, 'Patient');
const PARAMS = {
  Patient: {
    family: ['string', (r) => arr(r.name).map((n) => n.family).filter(Boolean)],
    given: ['string', (r) => arr(r.name).flatMap((n) => arr(n.given))],
    name: ['string', sName],
    'address-city': ['string', sAddr((a) => a.city)],
    'address-postalcode': ['string', sAddr((a) => a.postalCode)],
    birthdate: ['date', dVal('birthDate')],
    gender: ['token', tCode('Patient.gender')],
    identifier: ['token', tIdent((r) => r.identifier)],
    phone: ['token', tTelecom('phone')],
    email: ['token', tTelecom('email')],
    active: ['token', (r) => (typeof r.active === 'boolean' ? [{ system: null, code: String(r.active), texts: [] }] : [])],
    'general-practitioner': ['reference', refs((r) => r.generalPractitioner)],
    organization: ['reference', refs((r) => r.managingOrganization)],
  },
  Practitioner: {
    family: ['string', (r) => arr(r.name).map((n) => n.family).filter(Boolean)],
    given: ['string', (r) => arr(r.name).flatMap((n) => arr(n.given))],
    name: ['string', sName],
    identifier: ['token', tIdent((r) => r.identifier)],
    gender: ['token', tCode('Practitioner.gender')],
  },
  Organization: {
    name: ['string', (r) => [r.name, ...arr(r.alias)].filter(Boolean)],
    identifier: ['token', tIdent((r) => r.identifier)],
    'address-city': ['string', sAddr((a) => a.city)],
  },
  Observation: {
    code: ['token', tCC((r) => r.code)],
    'combo-code': ['token', tCC((r) => [r.code, ...arr(r.component).map((c) => c.code)])],
    category: ['token', tCC((r) => r.category)],
    status: ['token', tCode('Observation.status')],
    'value-concept': ['token', tCC((r) => r.valueCodeableConcept)],
    subject: ['reference', refs((r) => r.subject)],
    patient: ['reference', subjectPatient],
    encounter: ['reference', refs((r) => r.encounter)],
    performer: ['reference', refs((r) => r.performer)],
    date: ['date', dVal('effectiveDateTime', 'effectivePeriod', 'effectiveInstant')],
    'value-quantity': ['quantity', qty((r) => r.valueQuantity)],
    'component-value-quantity': ['quantity', qty((r) => arr(r.component).map((c) => c.valueQuantity))],
  },
  Condition: {
    code: ['token', tCC((r) => r.code)],
    'clinical-status': ['token', tCC((r) => r.clinicalStatus)],
    category: ['token', tCC((r) => r.category)],
    'onset-date': ['date', dVal('onsetDateTime', 'onsetPeriod')],
    'abatement-date': ['date', dVal('abatementDateTime', 'abatementPeriod')],
    'recorded-date': ['date', dVal('recordedDate')],
    subject: ['reference', refs((r) => r.subject)],
    patient: ['reference', subjectPatient],
    encounter: ['reference', refs((r) => r.encounter)],
  },
  Encounter: {
    date: ['date', dVal('period')],
    class: ['token', tCoding((r) => r.class)],
    type: ['token', tCC((r) => r.type)],
    status: ['token', tCode('Encounter.status')],
    'reason-code': ['token', tCC((r) => r.reasonCode)],
    subject: ['reference', refs((r) => r.subject)],
    patient: ['reference', subjectPatient],
    participant: ['reference', refs((r) => arr(r.participant).map((p) => p.individual))],
    practitioner: ['reference', refs((r) => arr(r.participant).map((p) => p.individual), 'Practitioner')],
    location: ['reference', refs((r) => arr(r.location).map((l) => l.location))],
    'service-provider': ['reference', refs((r) => r.serviceProvider)],
    'reason-reference': ['reference', refs((r) => r.reasonReference)],
  },
  MedicationRequest: {
    code: ['token', tCC((r) => r.medicationCodeableConcept)],
    status: ['token', tCode('MedicationRequest.status')],
    intent: ['token', tCode('MedicationRequest.intent')],
    authoredon: ['date', dVal('authoredOn')],
    subject: ['reference', refs((r) => r.subject)],
    patient: ['reference', subjectPatient],
    requester: ['reference', refs((r) => r.requester)],
  },
  AllergyIntolerance: {
    code: ['token', tCC((r) => [r.code, ...arr(r.reaction).map((x) => x.substance)])],
    criticality: ['token', tCode('AllergyIntolerance.criticality')],
    category: ['token', tCode('AllergyIntolerance.category')],
    date: ['date', dVal('recordedDate')],
    patient: ['reference', refs((r) => r.patient)],
  },
  Immunization: {
    'vaccine-code': ['token', tCC((r) => r.vaccineCode)],
    status: ['token', tCode('Immunization.status')],
    date: ['date', dVal('occurrenceDateTime')],
    patient: ['reference', refs((r) => r.patient)],
  },
  Procedure: {
    code: ['token', tCC((r) => r.code)],
    status: ['token', tCode('Procedure.status')],
    date: ['date', dVal('performedDateTime', 'performedPeriod')],
    subject: ['reference', refs((r) => r.subject)],
    patient: ['reference', subjectPatient],
  },
  RiskAssessment: {
    probability: ['number', (r) => arr(r.prediction).filter((p) => typeof p.probabilityDecimal === 'number').map((p) => ({ num: p.probabilityDecimal }))],
    subject: ['reference', refs((r) => r.subject)],
    date: ['date', dVal('occurrenceDateTime', 'occurrencePeriod')],
  },
};
for (const t of Object.keys(PARAMS)) {
  PARAMS[t]._id = ['id', (r) => [r.id]];
  PARAMS[t]._lastUpdated = ['date', (r) => [dateRange(r.meta.lastUpdated)]];
}
const TYPES = Object.keys(PARAMS);

// ------------------------------------------------------------------ the population
let srv;
let c;
let base;
const pop = new Map();      // type -> [resource]
const byRef = new Map();    // "Type/id" -> resource
const deletedIds = new Set();
const staleVersions = new Map(); // "Type/id" -> versionId of the current version

const memo = new WeakMap();
function values(r, param) {
  let m = memo.get(r);
  if (!m) memo.set(r, (m = new Map()));
  if (m.has(param)) return m.get(param);
  const d = PARAMS[r.resourceType][param];
  if (!d) throw new Error(`oracle has no ${r.resourceType}.${param}`);
  const v = d[1](r);
  m.set(param, v);
  return v;
}

async function load(bundleText) {
  const r = await c.post('/', bundleText, { timeoutMs: 300_000 });
  assert.equal(r.status, 200, r.text.slice(0, 600));
}

async function fetchAll(type) {
  const { entries } = await c.allPages(`/${type}?_count=1000`);
  return entries.map((e) => e.resource);
}

/** Crafted resources: accents and case, zones, partial dates, Periods open at one end, numbers
 * of several precisions, a deleted resource and an updated one (its old values must not match). */
function crafted() {
  const T = 'http://example.org/oracle';
  const pats = [
    { name: [{ family: 'Ångström', given: ['Zoë', 'Anne-Marie'], prefix: ['Dr'] }], birthDate: '1970', gender: 'female' },
    { name: [{ family: 'MÜLLER-Straße', given: ['Łukasz'] }], birthDate: '1985-06', gender: 'male' },
    { name: [{ family: "O'Brien", given: ['Siân'] }, { use: 'maiden', family: 'Wiśniewski' }], birthDate: '1999-12-31', gender: 'female' },
    { name: [{ family: 'van  der   Berg', given: ['ÆLFRED'] }], birthDate: '2000-01-01', gender: 'other', active: false },
    { name: [{ text: 'Øyvind Ðorđević' }], gender: 'unknown', active: true },
    { name: [{ family: 'Nguyễn', given: ['Thị'] }], birthDate: '1962-02-28' },
  ].map((p) => ({ resourceType: 'Patient', meta: { tag: [{ system: T, code: 'crafted' }] }, ...p }));
  const obs = [
    { effectiveDateTime: '2024-03-10T23:30:00+05:30', valueQuantity: { value: 37.5, unit: 'Cel', system: UCUM, code: 'Cel' } },
    { effectiveDateTime: '2024-03-10T00:15:00-08:00', valueQuantity: { value: 99.5, unit: '[degF]', system: UCUM, code: '[degF]' } },
    { effectiveDateTime: '2024-03', valueQuantity: { value: 70000, unit: 'g', system: UCUM, code: 'g' } },
    { effectiveDateTime: '2024', valueQuantity: { value: 70, unit: 'kg', system: UCUM, code: 'kg' } },
    { effectivePeriod: { start: '2023-12-31T22:00:00Z', end: '2024-01-01T02:00:00Z' }, valueQuantity: { value: 120, unit: 'mm[Hg]', system: UCUM, code: 'mm[Hg]' } },
    { effectivePeriod: { start: '2024-02-01' }, valueQuantity: { value: 5.25, unit: 'mmol/L', system: UCUM, code: 'mmol/L' } },
    { effectivePeriod: { end: '2019-06-15T12:00:00.123Z' }, valueQuantity: { value: 0.1, unit: 'x', code: 'x' } },
    { effectiveInstant: '2024-03-10T12:00:00.5Z', valueQuantity: { value: 100, unit: 'beats' } },
  ].map((o, i) => ({ resourceType: 'Observation', status: i % 2 ? 'final' : 'amended', meta: { tag: [{ system: T, code: 'crafted' }] },
    code: { coding: [{ system: T, code: `c${i % 3}`, display: `Crafted Code ${i % 3}` }], text: i % 2 ? 'Odd measurement' : undefined }, ...o }));
  const risks = ['0.5', '0.25', '0.123', '1', '0.05', '0.95', '0.4999', '0.2', '0.25', '0.7'].map((p, i) => ({
    resourceType: 'RiskAssessment', status: 'final', meta: { tag: [{ system: T, code: 'crafted' }] },
    occurrenceDateTime: `2025-0${1 + (i % 9)}-1${i % 10}`,
    prediction: i === 3 ? undefined : [{ probabilityDecimal: Number(p) }, ...(i % 4 === 1 ? [{ probabilityDecimal: 0.6 }] : [])],
  }));
  return { pats, obs, risks, T };
}

before(async () => {
  const dir = tempDir('bevan-oracle-');
  const d = await runBevan(['demo', '--data', dir, '--patients', String(DEMO_PATIENTS), '--seed', '11'], { timeoutMs: 120_000 });
  assert.equal(d.code, 0, d.stderr.slice(-2000));
  srv = await startServer({ data: dir });
  c = client(srv.base);
  base = srv.base;
  if (synthea) {
    const files = readdirSync(SYNTHEA_DIR).filter((f) => f.endsWith('.json')).sort();
    const shared = files.filter((f) => /^(hospital|practitioner)Information/.test(f));
    for (const f of shared) await load(readFileSync(join(SYNTHEA_DIR, f), 'utf8'));
    await pool(files.filter((f) => !shared.includes(f)), 2, (f) => load(readFileSync(join(SYNTHEA_DIR, f), 'utf8')));
  }
  const { pats, obs, risks } = crafted();
  const ids = [];
  for (const p of pats) ids.push((await c.post('/Patient', p)).json.id);
  const someDemoPatient = (await c.get('/Patient?_count=1&_sort=_id')).json.entry[0].resource.id;
  for (const [i, o] of obs.entries()) {
    o.subject = { reference: `Patient/${i % 3 === 2 ? someDemoPatient : ids[i % ids.length]}` };
    const r = await c.post('/Observation', o);
    assert.equal(r.status, 201, r.text);
  }
  for (const [i, ra] of risks.entries()) {
    ra.subject = { reference: `Patient/${ids[i % ids.length]}` };
    const r = await c.post('/RiskAssessment', ra);
    assert.equal(r.status, 201, r.text);
  }
  // a deleted Patient and Observation, and an updated Patient whose old name must not match
  const gone = await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Ångström', given: ['Deleted'] }], birthDate: '1970-05-05' });
  const goneObs = await c.post('/Observation', { ...obs[0], subject: { reference: `Patient/${gone.json.id}` } });
  assert.equal((await c.del(`/Patient/${gone.json.id}`)).status, 204);
  assert.equal((await c.del(`/Observation/${goneObs.json.id}`)).status, 204);
  deletedIds.add(`Patient/${gone.json.id}`).add(`Observation/${goneObs.json.id}`);
  const upd = (await c.get(`/Patient/${ids[5]}`)).json;
  upd.name = [{ family: 'Nguyen-Updated', given: ['Thi'] }];
  upd.birthDate = '1963-03-01';
  assert.equal((await c.put(`/Patient/${upd.id}`, upd)).status, 200);

  for (const t of TYPES) {
    const rs = await fetchAll(t);
    pop.set(t, rs);
    for (const r of rs) { byRef.set(`${t}/${r.id}`, r); staleVersions.set(`${t}/${r.id}`, r.meta.versionId); }
  }
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

// ------------------------------------------------------------------ matching one value
const escapeValue = (v) => v.replace(/\\/g, '\\\\').replace(/,/g, '\\,').replace(/\$/g, '\\$');
const escapeBar = (v) => escapeValue(v).replace(/\|/g, '\\|');

function tokenQuery(v) {
  const i = v.indexOf('|');
  if (i < 0) return { code: v };
  return { system: v.slice(0, i), code: v.slice(i + 1) };
}
function tokenMatch(vals, q) {
  return vals.some((t) => {
    if (t.code === undefined) return false; // a text-only row
    if (q.system === undefined) return t.code === q.code;
    if (q.system === '') return (t.system === null) && t.code === q.code;
    return t.system === q.system && (q.code === '' || t.code === q.code);
  });
}
function refMatch(vals, v, typeMod) {
  let type;
  let id;
  const local = v.startsWith(`${base}/`) ? v.slice(base.length + 1) : v;
  const m = /^([A-Za-z]+)\/([^/]+)$/.exec(local);
  if (m) [, type, id] = m;
  else { id = local; type = typeMod; }
  return vals.some((x) => x.id === id && (!type || x.type === type));
}

/**
 * One clause "name[:mod]=v1,v2" on resources of `type`: a test over a resource. Returns
 * {name, value (as sent), test}. Chains and _has are built by the generators below.
 */
function clause(type, name, mod, vs) {
  const def = PARAMS[type][name];
  if (!def) throw new Error(`${type}.${name}`);
  const [kind] = def;
  const sent = vs.map((v) => (kind === 'quantity' || kind === 'token' || kind === 'reference' || kind === 'id' ? v : escapeValue(v)));
  const full = mod ? `${name}:${mod}` : name;
  if (mod === 'missing') {
    return { name: full, value: vs[0], test: (r) => (values(r, name).length === 0) === (vs[0] === 'true') };
  }
  const one = (v) => {
    switch (kind) {
      case 'id': return (r) => r.id === v;
      case 'string': {
        if (mod === 'exact') return (r) => values(r, name).some((s) => s === v);
        const f = fold(v);
        if (mod === 'contains') return (r) => values(r, name).some((s) => fold(s).includes(f));
        return (r) => values(r, name).some((s) => fold(s).startsWith(f));
      }
      case 'token': {
        if (mod === 'text') {
          const lv = v.toLowerCase();
          return (r) => values(r, name).some((t) => t.texts.some((x) => x.toLowerCase().includes(lv)));
        }
        const q = tokenQuery(v);
        if (mod === 'not') return (r) => !tokenMatch(values(r, name), q);
        return (r) => tokenMatch(values(r, name), q);
      }
      case 'date': {
        const { op, p } = dateParam(v);
        if (op === 'ne') return (r) => values(r, name).some((t) => dateOp('ne', t, p));
        return (r) => values(r, name).some((t) => dateOp(op, t, p));
      }
      case 'number': {
        const [op, s] = splitPrefix(v);
        const q = numParam(s);
        return (r) => values(r, name).some((x) => numOp(op, x.num, q));
      }
      case 'quantity': {
        const [op, s] = splitPrefix(v);
        const [n, sys, code] = s.split('|');
        const q = numParam(n);
        if (code !== undefined && code !== '' && (sys === '' || sys === UCUM) && UNITS[code]) {
          const cq = { v: canon(code, q.v), lo: canon(code, q.lo), hi: canon(code, q.hi) };
          const dim = UNITS[code][0];
          return (r) => values(r, name).some((x) => x.system === UCUM && UNITS[x.code] && UNITS[x.code][0] === dim
            && numOp(op, canon(x.code, x.num), cq));
        }
        return (r) => values(r, name).some((x) => numOp(op, x.num, q)
          && (!sys || x.system === sys) && (!code || x.code === code));
      }
      case 'reference': return (r) => refMatch(values(r, name), v, mod);
      default: throw new Error(kind);
    }
  };
  const tests = vs.map(one);
  return { name: full, value: sent.join(','), test: (r) => tests.some((t) => t(r)) };
}

// ------------------------------------------------------------------ query generators
const all = (t) => pop.get(t) || [];
const some = (t, f) => all(t).filter(f);
const nonEmpty = (xs) => xs.filter((x) => x !== undefined && x !== null && x !== '');

function valuesOf(type, param) { return all(type).flatMap((r) => values(r, param)); }
const tokensOf = (type, param) => valuesOf(type, param).filter((t) => t.code !== undefined);

function randomDateString(d) {
  // a date near a stored value, at a random precision, sometimes with a zone
  const ms = Number.isFinite(d.lo) ? d.lo + int(3) * 86400000 * (chance(0.5) ? -1 : 1) * int(40) : Date.UTC(2020, 0, 1);
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  switch (int(7)) {
    case 0: return iso.slice(0, 4);
    case 1: return iso.slice(0, 7);
    case 2: case 3: return iso.slice(0, 10);
    case 4: return `${iso.slice(0, 19)}Z`;
    case 5: {
      const off = pick(['+05:30', '-04:00', '+01:00', '-11:00', '+14:00']);
      return `${iso.slice(0, 19)}${off}`;
    }
    default: return iso; // milliseconds, Z
  }
}
function dateClause(type, param) {
  const vals = valuesOf(type, param).filter((d) => Number.isFinite(d.lo) || Number.isFinite(d.hi));
  if (!vals.length) return null;
  const d = pick(vals);
  const dd = Number.isFinite(d.lo) ? d : { lo: d.hi, hi: d.hi };
  const n = chance(0.15) ? 2 : 1;
  const vs = Array.from({ length: n }, () => `${chance(0.85) ? pick(PREFIXES) : ''}${randomDateString(dd)}`);
  return clause(type, param, '', vs);
}

function stringClause(type, param) {
  const vals = nonEmpty(valuesOf(type, param));
  if (!vals.length) return null;
  const s = pick(vals);
  const mode = int(6);
  if (mode === 0) return clause(type, param, 'exact', [chance(0.7) ? s : s.toLowerCase()]);
  if (mode === 1) {
    const f = [...s];
    const i = int(Math.max(1, f.length - 2));
    return clause(type, param, 'contains', [f.slice(i, i + 2 + int(3)).join('')]);
  }
  let q = [...s].slice(0, 1 + int(Math.max(1, [...s].length))).join('');
  if (mode === 2) q = q.toUpperCase();
  if (mode === 3) q = q.normalize('NFD').replace(/\p{M}/gu, '');
  const vs = [q];
  if (chance(0.2)) vs.push(pick(vals).slice(0, 3));
  return clause(type, param, '', vs);
}

function tokenClause(type, param) {
  const vals = tokensOf(type, param);
  if (!vals.length) return null;
  const t = pick(vals);
  const mode = int(10);
  const code = (x) => (chance(0.5) && x.system ? `${x.system}|${x.code}` : x.code);
  if (mode === 0) return clause(type, param, 'not', [code(t)]);
  if (mode === 1) {
    const withText = valuesOf(type, param).filter((x) => x.texts.length);
    if (withText.length) {
      const words = pick(withText).texts[0].split(/\s+/).filter((w) => /^[A-Za-z]{3,}$/.test(w));
      if (words.length) return clause(type, param, 'text', [chance(0.5) ? pick(words).toLowerCase() : pick(words)]);
    }
  }
  if (mode === 2) return clause(type, param, 'missing', [pick(['true', 'false'])]);
  if (mode === 3 && t.system) return clause(type, param, '', [`${t.system}|`]);
  if (mode === 4) return clause(type, param, '', [`|${t.code}`]);
  if (mode === 5) return clause(type, param, '', uniq(Array.from({ length: 2 + int(4) }, () => code(pick(vals)))));
  return clause(type, param, '', [code(t)]);
}

function refClause(type, param) {
  const vals = valuesOf(type, param).filter((x) => x.id);
  if (!vals.length) return null;
  const x = pick(vals);
  const mode = int(7);
  if (mode === 0) return clause(type, param, '', [x.id]);
  if (mode === 1) return clause(type, param, x.type, [x.id]);
  if (mode === 2) return clause(type, param, '', [`${base}/${x.type}/${x.id}`]);
  if (mode === 3) return clause(type, param, 'missing', [pick(['true', 'false'])]);
  if (mode === 4) return clause(type, param, '', uniq([`${x.type}/${x.id}`, ...Array.from({ length: 1 + int(3) }, () => { const y = pick(vals); return `${y.type}/${y.id}`; })]));
  return clause(type, param, '', [`${x.type}/${x.id}`]);
}

function quantityClause(type, param) {
  const vals = valuesOf(type, param);
  if (!vals.length) return null;
  const x = pick(vals);
  const op = chance(0.8) ? pick(PREFIXES) : '';
  // the stored value at its own precision, or rounded to fewer digits
  const digits = (String(x.num).split('.')[1] || '').length;
  const num = chance(0.5) ? String(x.num) : x.num.toFixed(Math.max(0, digits - 1));
  const mode = int(6);
  if (mode === 0 || !x.code) return clause(type, param, '', [`${op}${num}`]);
  if (mode === 1) return clause(type, param, '', [`${op}${num}||${x.code}`]);
  if (mode === 2 && x.code === 'kg') return clause(type, param, '', [`${op}${(x.num * 1000).toFixed(0)}|${UCUM}|g`]);
  if (mode === 3 && x.code === 'Cel') return clause(type, param, '', [`${op}${(x.num * 9 / 5 + 32).toFixed(1)}|${UCUM}|[degF]`]);
  return clause(type, param, '', [`${op}${num}|${x.system ?? ''}|${x.code}`]);
}

function numberClause(type, param) {
  const vals = valuesOf(type, param);
  if (!vals.length) return null;
  const x = pick(vals);
  const op = chance(0.8) ? pick(PREFIXES) : '';
  const s = pick([String(x.num), x.num.toFixed(1), x.num.toFixed(3), '0.25', '0.5', '0.6', '1']);
  return clause(type, param, '', chance(0.2) ? [`${op}${s}`, pick(['lt0.1', 'gt0.9', '0.6'])] : [`${op}${s}`]);
}

function lastUpdatedClause(type) {
  const lus = all(type).map((r) => r.meta.lastUpdated).sort();
  if (!lus.length) return null;
  const lu = pick(lus);
  const op = pick(['gt', 'lt', 'ge', 'le', 'eq', 'ne', 'sa', 'eb']);
  const v = chance(0.5) ? lu : chance(0.5) ? lu.slice(0, 19) + 'Z' : lu.slice(0, 10);
  return clause(type, '_lastUpdated', '', [`${op}${v}`]);
}

function idClause(type) {
  const rs = all(type);
  if (!rs.length) return null;
  return clause(type, '_id', '', uniq(Array.from({ length: 1 + int(4) }, () => pick(rs).id)));
}

function paramClause(type, param) {
  const kind = PARAMS[type][param][0];
  switch (kind) {
    case 'string': return stringClause(type, param);
    case 'token': return tokenClause(type, param);
    case 'date': return param === '_lastUpdated' ? lastUpdatedClause(type) : dateClause(type, param);
    case 'reference': return refClause(type, param);
    case 'quantity': return quantityClause(type, param);
    case 'number': return numberClause(type, param);
    case 'id': return idClause(type);
    default: return null;
  }
}

/** A chain: [param]:[Type].[chained clause]; the test resolves the reference. */
function chainClause(type, param, target, inner) {
  if (!inner) return null;
  const typed = chance(0.5);
  return {
    name: `${param}${typed ? `:${target}` : ''}.${inner.name}`,
    value: inner.value,
    test: (r) => values(r, param).some((x) => x.type === target && byRef.has(`${target}/${x.id}`) && inner.test(byRef.get(`${target}/${x.id}`))),
  };
}
/** _has:Type:param:[inner]: resources that some matching Type refers to through param. */
function hasClause(type, src, param, inner) {
  if (!inner) return null;
  const hits = new Set();
  for (const s of all(src)) {
    if (!inner.test(s)) continue;
    for (const x of values(s, param)) if (x.type === type) hits.add(x.id);
  }
  return { name: `_has:${src}:${param}:${inner.name}`, value: inner.value, test: (r) => hits.has(r.id) };
}

const CHAINS = [
  ['Observation', 'subject', 'Patient', ['family', 'given', 'birthdate', 'gender', 'identifier', 'address-city']],
  ['Observation', 'patient', 'Patient', ['name', 'birthdate']],
  ['Observation', 'encounter', 'Encounter', ['date', 'class', 'type']],
  ['Condition', 'subject', 'Patient', ['family', 'gender', 'birthdate']],
  ['Encounter', 'service-provider', 'Organization', ['name', 'identifier']],
  ['Encounter', 'participant', 'Practitioner', ['family', 'identifier']],
  ['Patient', 'general-practitioner', 'Practitioner', ['family', 'given']],
  ['Patient', 'organization', 'Organization', ['name']],
  ['MedicationRequest', 'requester', 'Practitioner', ['family']],
];
const HAS = [
  ['Patient', 'Observation', 'patient', ['code', 'value-quantity', 'date']],
  ['Patient', 'Condition', 'subject', ['code', 'clinical-status', 'onset-date']],
  ['Patient', 'MedicationRequest', 'subject', ['code']],
  ['Patient', 'AllergyIntolerance', 'patient', ['code', 'criticality']],
  ['Practitioner', 'Encounter', 'participant', ['type', 'date']],
  ['Organization', 'Patient', 'organization', ['gender', 'birthdate']],
  ['Encounter', 'Observation', 'encounter', ['code']],
];

const SORTABLE = {
  Patient: ['family', 'birthdate', 'gender', '_id', '_lastUpdated', 'given'],
  Observation: ['date', 'code', 'value-quantity', '_lastUpdated'],
  Encounter: ['date', 'status'],
  Condition: ['onset-date', 'code', 'recorded-date'],
  RiskAssessment: ['probability'],
  Immunization: ['date'],
};

function genQuery() {
  const r = rnd();
  if (r < 0.1) { // chain (sometimes two links)
    const [type, param, target, inner] = pick(CHAINS);
    let cl;
    if (type === 'Observation' && param === 'subject' && chance(0.3)) {
      const in2 = chainClause('Patient', 'organization', 'Organization', paramClause('Organization', 'name'));
      cl = in2 && chainClause(type, param, target, in2);
    } else cl = chainClause(type, param, target, paramClause(target, pick(inner)));
    return cl && { type, clauses: [cl] };
  }
  if (r < 0.18) { // _has (sometimes nested)
    const [type, src, param, inner] = pick(HAS);
    let cl;
    if (type === 'Organization' && chance(0.5)) {
      const [, src2, param2, inner2] = HAS[0];
      const in2 = hasClause('Patient', src2, param2, paramClause(src2, pick(inner2)));
      cl = in2 && hasClause(type, src, param, in2);
    } else cl = hasClause(type, src, param, paramClause(src, pick(inner)));
    return cl && { type, clauses: [cl] };
  }
  const types = TYPES.filter((t) => all(t).length);
  const type = pick(types);
  const params = Object.keys(PARAMS[type]);
  const n = 1 + (chance(0.35) ? 1 : 0) + (chance(0.1) ? 1 : 0);
  const clauses = [];
  for (let i = 0; i < n; i++) {
    // AND repeats: sometimes the same parameter twice (a date range, two name parts)
    const p = i > 0 && chance(0.3) ? clauses[0].param : pick(params);
    const cl = paramClause(type, p);
    if (cl) clauses.push({ ...cl, param: p });
  }
  if (!clauses.length) return null;
  const q = { type, clauses };
  if (SORTABLE[type] && chance(0.25)) q.sort = `${chance(0.5) ? '-' : ''}${pick(SORTABLE[type])}`;
  return q;
}

// ------------------------------------------------------------------ sort keys (oracle side)
function sortKey(r, spec) {
  const desc = spec.startsWith('-');
  const p = desc ? spec.slice(1) : spec;
  if (p === '_id') return r.id;
  if (p === '_lastUpdated') return dateRange(r.meta.lastUpdated).lo;
  const [kind] = PARAMS[r.resourceType][p];
  const vs = values(r, p);
  let ks;
  if (kind === 'string') ks = vs.map(fold);
  else if (kind === 'token') ks = vs.filter((t) => t.code !== undefined).map((t) => t.code);
  else if (kind === 'date') ks = vs.map((d) => (desc ? d.hi : d.lo));
  else ks = vs.map((x) => x.num);
  if (!ks.length) return null;
  return ks.reduce((a, b) => ((desc ? b > a : b < a) ? b : a));
}
function sortOrderProblem(rs, spec) {
  const desc = spec.startsWith('-');
  const keys = rs.map((r) => sortKey(r, spec));
  for (let i = 1; i < keys.length; i++) {
    const a = keys[i - 1];
    const b = keys[i];
    if (a === null && b !== null) return `a resource without a value before one with (${i})`;
    if (a === null || b === null) continue;
    if (desc ? b > a : b < a) return `order broken at ${i}: ${JSON.stringify(a)} then ${JSON.stringify(b)}`;
  }
  return null;
}

// ------------------------------------------------------------------ running one query
function queryString(q) {
  const parts = q.clauses.map((cl) => `${encodeURIComponent(cl.name)}=${encodeURIComponent(cl.value)}`);
  if (q.sort) parts.push(`_sort=${encodeURIComponent(q.sort)}`);
  if (q.include) parts.push(`${q.include.rev ? '_revinclude' : '_include'}=${encodeURIComponent(q.include.spec)}`);
  return parts.join('&');
}

async function runQuery(q) {
  const qs = queryString(q);
  const t0 = Date.now();
  const problems = [];
  const want = new Set(all(q.type).filter((r) => q.clauses.every((cl) => cl.test(r))).map((r) => `${q.type}/${r.id}`));
  // pages of 7 up to 70 matches; a broader result is walked in pages of 70 or 700, so that no
  // query takes more than about 10 pages (each page re-runs the search; the ASan build is slow)
  const size = want.size <= 10 * PAGE ? PAGE : want.size <= 100 * PAGE ? 10 * PAGE : 100 * PAGE;
  let url = `/${q.type}?${qs}&_count=${size}`;
  const got = [];
  const included = new Set();
  let total;
  for (let pages = 0; url; pages++) {
    if (pages > 2000) { problems.push('more than 2000 pages'); break; }
    const r = await c.get(url, { timeoutMs: 60_000 });
    if (r.status !== 200) { problems.push(`HTTP ${r.status}: ${r.text.slice(0, 300)}`); break; }
    if (pages === 0) total = r.json.total;
    const entries = r.json.entry || [];
    const matches = entries.filter((e) => e.search?.mode !== 'include');
    if (matches.length > size) problems.push(`page ${pages} has ${matches.length} matches`);
    for (const e of matches) got.push(e.resource);
    for (const e of entries.filter((x) => x.search?.mode === 'include')) included.add(`${e.resource.resourceType}/${e.resource.id}`);
    const next = (r.json.link || []).find((l) => l.relation === 'next');
    url = next ? next.url : null;
    if (next && matches.length === 0) problems.push(`empty page ${pages} with a next link`);
  }
  const gotIds = got.map((r) => `${r.resourceType}/${r.id}`);
  const seen = new Set();
  for (const k of gotIds) { if (seen.has(k)) problems.push(`${k} returned twice`); seen.add(k); }
  for (const r of got) {
    const k = `${r.resourceType}/${r.id}`;
    if (deletedIds.has(k)) problems.push(`deleted ${k} returned`);
    else if (staleVersions.has(k) && staleVersions.get(k) !== r.meta.versionId) problems.push(`${k} version ${r.meta.versionId} is stale`);
  }
  const missing = [...want].filter((k) => !seen.has(k));
  const extra = [...seen].filter((k) => !want.has(k));
  if (missing.length) problems.push(`missing ${missing.length}: ${missing.slice(0, 5).join(' ')}`);
  if (extra.length) problems.push(`extra ${extra.length}: ${extra.slice(0, 5).join(' ')}`);
  if (total !== undefined && total !== want.size && !missing.length && !extra.length) problems.push(`total ${total}, expected ${want.size}`);
  if (q.sort && !missing.length && !extra.length) {
    const p = sortOrderProblem(got, q.sort);
    if (p) problems.push(`_sort=${q.sort}: ${p}`);
  }
  if (q.include && !missing.length && !extra.length) {
    const wantInc = q.include.expected(got);
    const a = [...wantInc].filter((k) => !included.has(k) && !seen.has(k));
    const b = [...included].filter((k) => !wantInc.has(k));
    if (a.length) problems.push(`${q.include.spec}: ${a.length} not included: ${a.slice(0, 3).join(' ')}`);
    if (b.length) problems.push(`${q.include.spec}: ${b.length} included wrongly: ${b.slice(0, 3).join(' ')}`);
  }
  return { qs: `${q.type}?${qs}`, n: want.size, problems, ms: Date.now() - t0 };
}

// ------------------------------------------------------------------ the tests
const report = { queries: 0, nonEmpty: 0, byKind: {} };

test('oracle: generated queries return exactly the resources a scan finds', { timeout: 600_000 }, async () => {
  assert.ok(all('Patient').length >= DEMO_PATIENTS, 'the population loaded');
  const queries = [];
  for (let i = 0; queries.length < N_QUERIES && i < N_QUERIES * 5; i++) {
    const q = genQuery();
    if (q) queries.push(q);
  }
  const results = await pool(queries, 3, runQuery);
  const failures = results.filter((r) => r.problems.length);
  report.queries = results.length;
  report.nonEmpty = results.filter((r) => r.n > 0).length;
  for (const q of queries) for (const cl of q.clauses) {
    const k = cl.name.includes('.') ? 'chain' : cl.name.startsWith('_has') ? '_has' : cl.name.includes(':') ? `:${cl.name.split(':')[1]}` : (PARAMS[q.type][cl.name]?.[0] ?? cl.name);
    report.byKind[k] = (report.byKind[k] || 0) + 1;
  }
  console.log(`# oracle: ${results.length} queries, ${report.nonEmpty} with matches, ${failures.length} differences; clauses by kind ${JSON.stringify(report.byKind)}`);
  const slow = [...results].sort((a, b) => b.ms - a.ms).slice(0, 8);
  console.log(`# slowest: ${slow.map((r) => `${r.ms} ms ${r.n} ${r.qs.slice(0, 140)}`).join('\n#   ')}`);
  assert.ok(report.nonEmpty > results.length / 3, `too few queries match anything (${report.nonEmpty})`);
  assert.deepEqual(failures.map((f) => `${f.qs} -> ${f.problems.join('; ')}`), []);
});

test('oracle: _include and _revinclude bring exactly the referenced and referring resources', { timeout: 300_000 }, async () => {
  const refTargets = (param) => (rs) => new Set(rs.flatMap((r) => values(r, param).filter((x) => x.id && byRef.has(`${x.type}/${x.id}`)).map((x) => `${x.type}/${x.id}`)));
  const referrers = (src, param) => (rs) => {
    const ids = new Set(rs.map((r) => `${r.resourceType}/${r.id}`));
    return new Set(all(src).filter((s) => values(s, param).some((x) => ids.has(`${x.type}/${x.id}`))).map((s) => `${src}/${s.id}`));
  };
  const queries = [];
  for (let i = 0; i < 30; i++) {
    const code = pick(tokensOf('Observation', 'code'));
    queries.push({ type: 'Observation', clauses: [clause('Observation', 'code', '', [code.code])],
      include: { spec: pick(['Observation:patient', 'Observation:subject', 'Observation:encounter']), rev: false } });
    const last = queries[queries.length - 1];
    last.include.expected = refTargets(last.include.spec.split(':')[1]);
    const fam = pick(nonEmpty(valuesOf('Patient', 'family')));
    const [src, param] = pick([['Observation', 'patient'], ['Condition', 'subject'], ['Encounter', 'subject'], ['AllergyIntolerance', 'patient']]);
    queries.push({ type: 'Patient', clauses: [clause('Patient', 'family', 'exact', [fam])],
      include: { spec: `${src}:${param}`, rev: true, expected: referrers(src, param) } });
  }
  const results = await pool(queries, 3, runQuery);
  const failures = results.filter((r) => r.problems.length);
  console.log(`# oracle includes: ${results.length} queries, ${failures.length} differences`);
  assert.deepEqual(failures.map((f) => `${f.qs} -> ${f.problems.join('; ')}`), []);
});

test('oracle: OR lists of 1,000 values and _total=accurate counts', { timeout: 300_000 }, async () => {
  const ids = all('Observation').map((r) => r.id);
  // 200 ids fit in a URL: walk every page of the GET
  const fake = (n) => Array.from({ length: n }, (_, i) => `no-such-${i}`);
  const chosen = uniq(Array.from({ length: 40 }, () => pick(ids)));
  const q = { type: 'Observation', clauses: [clause('Observation', '_id', '', [...fake(160), ...chosen])] };
  const r = await runQuery(q);
  assert.deepEqual(r.problems, [], r.qs.slice(0, 200));
  // 1,000 values do not fit in a URL (8 KB): POST _search, one page
  const q1k = clause('Observation', '_id', '', [...fake(1000 - chosen.length), ...chosen]);
  const p = await c.req('POST', '/Observation/_search', { body: `_id=${encodeURIComponent(q1k.value)}&_count=1000`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(p.status, 200, p.text.slice(0, 300));
  assert.deepEqual((p.json.entry || []).map((e) => e.resource.id).sort(), chosen.slice().sort());
  const codes = uniq(tokensOf('Observation', 'code').map((t) => t.code));
  const many = [...codes, ...Array.from({ length: 1000 - codes.length }, (_, i) => `zz${i}`)];
  const q2 = { type: 'Observation', clauses: [clause('Observation', 'code', '', many)] };
  const want = all('Observation').filter(q2.clauses[0].test).length;
  const cnt = await c.req('POST', '/Observation/_search', { body: `${queryString(q2)}&_total=accurate&_count=1`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(cnt.status, 200, cnt.text.slice(0, 300));
  assert.equal(cnt.json.total, want);
  for (const t of ['Patient', 'Observation', 'Encounter']) {
    const fam = t === 'Patient' ? pick(nonEmpty(valuesOf('Patient', 'family'))) : null;
    const query = fam ? `family=${encodeURIComponent(fam)}` : `_lastUpdated=gt2000`;
    const exp = fam ? all(t).filter((x) => values(x, 'family').some((s) => fold(s).startsWith(fold(fam)))).length : all(t).length;
    const a = await c.get(`/${t}?${query}&_total=accurate&_count=2`);
    assert.equal(a.json.total, exp, `${t}?${query}`);
    assert.equal(await c.count(`/${t}?${query}`), exp);
  }
});
