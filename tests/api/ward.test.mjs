// Virtual wards (issue 5, docs/ward.md): enrolment, plausibility 422s, oximetry alerts as Flag +
// Task, deduplication, escalation, acknowledge/close, NEWS2 Observations, discharge.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome } from './lib/server.mjs';
import {
  until, makeWard, makePatient, planBody, enrol, reading, sitting, tasks, flags, news2, alertCode,
  ALERT, BAND, PLAN_EXT,
} from './lib/ward.mjs';

let srv;
let c;
let ward;
before(async () => {
  srv = await startServer();
  c = client(srv.base);
  ward = await makeWard(c);
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

test('invalid monitoring plans are refused with 422 and nothing is stored', async () => {
  const p = await makePatient(c);
  const before = await c.count('CarePlan');
  const bad = [
    ['scale 2 without who decided', planBody(p, ward, { subs: [{ url: 'news2Scale', valueInteger: 2 }] }), 'scale2DecidedBy'],
    ['thresholds out of order', planBody(p, ward, { subs: [{ url: 'spo2AmberAtOrBelow', valueInteger: 90 }, { url: 'spo2RedAtOrBelow', valueInteger: 91 }] }), 'out of order'],
    ['scale 3', planBody(p, ward, { subs: [{ url: 'news2Scale', valueInteger: 3 }] }), 'news2Scale'],
    ['no ward', { ...planBody(p, ward), careTeam: undefined }, 'careTeam'],
  ];
  for (const [what, body, word] of bad) {
    const r = await c.post('/CarePlan', JSON.parse(JSON.stringify(body)));
    const oo = assertOutcome(r, 422, what);
    assert.ok(oo.issue.some((i) => i.code === 'business-rule' && i.diagnostics.includes(word)), `${what}: ${r.text}`);
  }
  assert.equal(await c.count('CarePlan'), before);
  // Scale 2 with the deciding clinician is fine
  const doc = await c.post('/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Decider' }] });
  const ok = await c.post('/CarePlan', planBody(p, ward, {
    subs: [{ url: 'news2Scale', valueInteger: 2 }, { url: 'scale2DecidedBy', valueReference: { reference: `Practitioner/${doc.json.id}` } }],
  }));
  assert.equal(ok.status, 201, ok.text);
});

test('implausible readings get a 422 saying what is wrong; nothing is stored, not even from a transaction', async () => {
  const p = await makePatient(c);
  const before = await c.count('Observation');
  const cases = [
    ['SpO2 over 100', reading.spo2(p, 101), /SpO2.*101/],
    ['SpO2 of 12', reading.spo2(p, 12), /SpO2/],
    ['pulse 0', reading.pulse(p, 0), /pulse/],
    ['temperature 60 °C', reading.temp(p, 60), /temperature.*60/],
    ['SpO2 in mm[Hg]', { ...reading.spo2(p, 96), valueQuantity: { value: 96, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }, /wrong unit.*mm\[Hg\]/],
    ['pulse in Cel', { ...reading.pulse(p, 70), valueQuantity: { value: 70, system: 'http://unitsofmeasure.org', code: 'Cel' } }, /wrong unit/],
  ];
  for (const [what, body, re] of cases) {
    const r = await c.post('/Observation', body);
    const oo = assertOutcome(r, 422, what);
    assert.match(oo.issue[0].diagnostics, re, what);
  }
  // one implausible value in a sitting refuses the whole transaction
  const b = sitting(p, { rr: 16, spo2: 97, sbp: 120, pulse: 0, temp: 36.8 });
  const r = await c.post('', b);
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.resourceType, 'OperationOutcome');
  assert.ok(r.json.issue.some((i) => /pulse/.test(i.diagnostics)), r.text);
  assert.equal(await c.count('Observation'), before);
  // a PATCH that makes a reading implausible is refused too, and leaves it as it was
  const ok = await c.post('/Observation', reading.spo2(p, 96));
  assert.equal(ok.status, 201, ok.text);
  const pr = await c.patch(`/Observation/${ok.json.id}`, [{ op: 'replace', path: '/valueQuantity/value', value: 101 }]);
  assertOutcome(pr, 422, 'PATCH to SpO2 101');
  assert.equal((await c.get(`/Observation/${ok.json.id}`)).json.valueQuantity.value, 96);
  // plausible values of the same codes are accepted (°F too)
  const f = await c.post('/Observation', { ...reading.temp(p, 98.6), valueQuantity: { value: 98.6, system: 'http://unitsofmeasure.org', code: '[degF]', unit: '°F' } });
  assert.equal(f.status, 201, f.text);
});

test('an amber SpO2 raises one Flag + Task; repeats update it; red escalates it; close makes the Flag inactive', async () => {
  const p = await makePatient(c, 'Amber');
  const plan = await enrol(c, p, ward);
  assert.equal((await c.post('/Observation', reading.spo2(p, 97))).status, 201);
  assert.equal((await c.post('/Observation', reading.spo2(p, 94))).status, 201);
  const [t1] = await until(async () => { const t = await tasks(c, p); return t.length ? t : null; }, 'an alert Task');
  assert.equal(alertCode(t1), 'spo2-amber');
  assert.equal(t1.status, 'requested');
  assert.equal(t1.intent, 'order');
  assert.equal(t1.priority, 'urgent');
  assert.equal(t1.for.reference, `Patient/${p}`);
  assert.equal(t1.owner.reference, `CareTeam/${ward}`);
  assert.match(t1.description, /SpO2 94%/);
  assert.ok(t1.authoredOn);
  const flagId = t1.focus.reference.replace('Flag/', '');
  const f1 = (await c.get(`/Flag/${flagId}`)).json;
  assert.equal(f1.status, 'active');
  assert.equal(f1.code.coding[0].system, ALERT);
  assert.equal(f1.code.coding[0].code, 'spo2-amber');
  assert.equal(f1.subject.reference, `Patient/${p}`);
  assert.ok(f1.period.start);
  assert.equal(f1.extension[0].url, 'http://bevan.dev/fhir/StructureDefinition/care-plan');
  assert.equal(f1.extension[0].valueReference.reference, `CarePlan/${plan.id}`);
  // the generated resources are valid FHIR
  for (const [type, res] of [['Task', t1], ['Flag', f1]]) {
    const v = await c.post(`/${type}/$validate`, res);
    assert.equal(v.status, 200, `${type} $validate: ${v.text}`);
  }

  // the same band again: the open alert is updated, not duplicated
  assert.equal((await c.post('/Observation', reading.spo2(p, 93))).status, 201);
  const t2 = await until(async () => {
    const t = await tasks(c, p);
    return t.length === 1 && /SpO2 93%/.test(t[0].description) ? t[0] : null;
  }, 'the Task updated with the new reading');
  assert.equal(t2.id, t1.id);
  assert.equal(alertCode(t2), 'spo2-amber');
  assert.equal((await flags(c, p)).length, 1);

  // acknowledge with a note: status accepted; the Flag stays active
  const ack = await c.put(`/Task/${t1.id}`, { ...t2, meta: undefined, status: 'accepted', businessStatus: { text: 'acknowledged' }, note: [{ text: 'Called the patient, feels OK' }] });
  assert.equal(ack.status, 200, ack.text);

  // worse: red escalates the same alert (code, priority, back to requested)
  assert.equal((await c.post('/Observation', reading.spo2(p, 90))).status, 201);
  const t3 = await until(async () => {
    const t = await tasks(c, p);
    return t.length === 1 && alertCode(t[0]) === 'spo2-red' ? t[0] : null;
  }, 'escalation to spo2-red');
  assert.equal(t3.priority, 'stat');
  assert.equal(t3.status, 'requested');
  assert.equal(t3.businessStatus, undefined, 'the acknowledgement no longer holds after escalation');
  assert.ok(t3.note.some((n) => n.text === 'Called the patient, feels OK'), 'the clinician note is kept');
  assert.ok(t3.note.some((n) => /Escalated from spo2-amber to spo2-red/.test(n.text)));
  const f3 = (await c.get(`/Flag/${flagId}`)).json;
  assert.equal(f3.code.coding[0].code, 'spo2-red');
  assert.equal((await flags(c, p)).length, 1);

  // better again (amber) does not downgrade the open red alert
  assert.equal((await c.post('/Observation', reading.spo2(p, 94))).status, 201);

  // close: Task completed -> Flag inactive
  const cur = (await c.get(`/Task/${t1.id}`)).json;
  const done = await c.put(`/Task/${t1.id}`, { ...cur, meta: undefined, status: 'completed' });
  assert.equal(done.status, 200, done.text);
  const f4 = await until(async () => {
    const f = (await c.get(`/Flag/${flagId}`)).json;
    return f.status === 'inactive' ? f : null;
  }, 'the Flag inactive after the Task was closed');
  assert.ok(f4.period.end);
  assert.equal(alertCode((await c.get(`/Task/${t1.id}`)).json), 'spo2-red', 'the amber reading did not downgrade');

  // a new amber reading after closing raises a new alert
  assert.equal((await c.post('/Observation', reading.spo2(p, 93))).status, 201);
  const open = await until(async () => {
    const t = await tasks(c, p);
    return t.filter((x) => x.status === 'requested').length === 1 ? t : null;
  }, 'a new alert after the old one was closed');
  assert.equal(open.length, 2);
});

test('deleting an alert Task instead of closing it makes its Flag inactive; a new reading raises a new alert', async () => {
  const p = await makePatient(c, 'Deleted');
  await enrol(c, p, ward);
  assert.equal((await c.post('/Observation', reading.spo2(p, 97))).status, 201);
  assert.equal((await c.post('/Observation', reading.spo2(p, 94))).status, 201);
  const [t1] = await until(async () => { const t = await tasks(c, p); return t.length ? t : null; }, 'an alert Task');
  const flagId = t1.focus.reference.replace('Flag/', '');
  assert.equal((await c.get(`/Flag/${flagId}`)).json.status, 'active');
  assert.equal((await c.del(`/Task/${t1.id}`)).status, 204);
  const f = await until(async () => {
    const r = (await c.get(`/Flag/${flagId}`)).json;
    return r.status === 'inactive' ? r : null;
  }, 'the Flag inactive after its Task was deleted');
  assert.ok(f.period.end);
  assert.equal((await c.post('/Observation', reading.spo2(p, 93))).status, 201);
  const open = await until(async () => {
    const fl = await flags(c, p);
    return fl.some((x) => x.status === 'active' && x.id !== flagId) ? fl : null;
  }, 'a new active Flag for the new reading');
  assert.equal(open.filter((x) => x.status === 'active').length, 1);
});

test('a sustained drop of 3 against the baseline alerts; a drop of 2 does not', async () => {
  const p = await makePatient(c, 'Baseline');
  await enrol(c, p, ward, { subs: [{ url: 'spo2Baseline', valueInteger: 99 }] });
  const q = await makePatient(c, 'Drop');
  await enrol(c, q, ward, { subs: [{ url: 'spo2Baseline', valueInteger: 99 }] });
  for (const v of [97, 97]) assert.equal((await c.post('/Observation', reading.spo2(p, v))).status, 201);   // drop 2
  for (const v of [96, 96]) assert.equal((await c.post('/Observation', reading.spo2(q, v))).status, 201);   // drop 3
  const [t] = await until(async () => { const x = await tasks(c, q); return x.length ? x : null; }, 'the drop alert');
  assert.equal(alertCode(t), 'spo2-drop');
  assert.equal(t.priority, 'urgent');
  // changes are processed in order: q's alert exists, so p's readings were seen and raised nothing
  assert.equal((await tasks(c, p)).length, 0);
});

test('a full set of parameters in one sitting gives a NEWS2 Observation and a NEWS2 alert', async () => {
  const p = await makePatient(c, 'News');
  await enrol(c, p, ward);
  const when = new Date(Date.now() - 5 * 60_000).toISOString();
  // domain.md §1.1 vector: 22, 94, air, 105, 95, A, 38.4 -> 2,1,0,1,1,0,1 = 6 medium
  const r = await c.post('', sitting(p, { rr: 22, spo2: 94, sbp: 105, pulse: 95, temp: 38.4 }, when));
  assert.equal(r.status, 200, r.text);
  const ids = r.json.entry.map((e) => e.response.location.split('/')[1]);
  const [n] = await until(async () => { const x = await news2(c, p); return x.length ? x : null; }, 'a NEWS2 Observation');
  assert.equal(n.valueInteger, 6);
  assert.equal(n.code.coding[0].system, 'http://snomed.info/sct');
  assert.equal(n.code.coding[0].code, '1104051000000101');
  assert.equal(n.subject.reference, `Patient/${p}`);
  assert.equal(new Date(n.effectiveDateTime).getTime(), new Date(when).getTime());
  assert.equal(n.interpretation[0].coding[0].system, BAND);
  assert.equal(n.interpretation[0].coding[0].code, 'medium');
  assert.equal(n.component.length, 7);
  const sub = Object.fromEntries(n.component.map((x) => [x.code.coding[0].code, x.valueInteger]));
  assert.deepEqual(sub, {
    1104301000000104: 2, 1104311000000102: 1, 1104331000000105: 0, 1104341000000101: 1,
    1104351000000103: 1, 1104361000000100: 0, 1104371000000107: 1,
  });
  assert.deepEqual(n.derivedFrom.map((d) => d.reference.split('/')[1]).sort(), [...ids].sort());
  const v = await c.post('/Observation/$validate', n);
  assert.equal(v.status, 200, v.text);
  const t = await until(async () => {
    const x = await tasks(c, p);
    return x.find((y) => alertCode(y) === 'news2-medium');
  }, 'the news2-medium alert');
  assert.equal(t.priority, 'asap');
  // SpO2 94 also raised the oximetry alert (a different family)
  assert.ok((await tasks(c, p)).some((y) => alertCode(y) === 'spo2-amber'));
  // exactly one NEWS2 for the sitting (7 readings, one score)
  assert.equal((await news2(c, p)).length, 1);

  // a second sitting, worse: a new NEWS2 and the NEWS2 alert escalates to high
  const r2 = await c.post('', sitting(p, { rr: 26, spo2: 88, oxygen: true, sbp: 86, pulse: 132, acvpu: 'V', temp: 39.5 }));
  assert.equal(r2.status, 200, r2.text);
  const hi = await until(async () => {
    const x = await news2(c, p);
    return x.find((o) => o.valueInteger === 19);
  }, 'NEWS2 19');
  assert.equal(hi.interpretation[0].coding[0].code, 'high');
  const t2 = await until(async () => {
    const x = (await tasks(c, p)).filter((y) => alertCode(y).startsWith('news2'));
    return x.length === 1 && alertCode(x[0]) === 'news2-high' ? x[0] : null;
  }, 'escalation to news2-high');
  assert.equal(t2.id, t.id);
  assert.equal(t2.priority, 'stat');
});

test('NEWS2 low-medium (a 3 in one parameter) and Scale 2 on oxygen', async () => {
  const p = await makePatient(c, 'RedScore');
  await enrol(c, p, ward);
  assert.equal((await c.post('', sitting(p, { rr: 7, spo2: 96, sbp: 120, pulse: 70, temp: 37.0 }))).status, 200);
  const [n] = await until(async () => { const x = await news2(c, p); return x.length ? x : null; }, 'NEWS2');
  assert.equal(n.valueInteger, 3);
  assert.equal(n.interpretation[0].coding[0].code, 'low-medium');
  const t = await until(async () => (await tasks(c, p)).find((y) => alertCode(y) === 'news2-low-medium'), 'low-medium alert');
  assert.equal(t.priority, 'urgent');

  const q = await makePatient(c, 'Scale2');
  const doc = await c.post('/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Resp' }] });
  await enrol(c, q, ward, {
    subs: [{ url: 'news2Scale', valueInteger: 2 }, { url: 'scale2DecidedBy', valueReference: { reference: `Practitioner/${doc.json.id}` } },
      { url: 'spo2AmberAtOrBelow', valueInteger: 87 }, { url: 'spo2RedAtOrBelow', valueInteger: 85 }],
  });
  // domain.md vector: 18, 95 on O2 (scale 2), 125, 80, A, 37.0 -> 0,2,2,0,0,0,0 = 4 low
  assert.equal((await c.post('', sitting(q, { rr: 18, spo2: 95, oxygen: true, sbp: 125, pulse: 80, temp: 37.0 }))).status, 200);
  const [m] = await until(async () => { const x = await news2(c, q); return x.length ? x : null; }, 'Scale 2 NEWS2');
  assert.equal(m.valueInteger, 4);
  assert.equal(m.interpretation[0].coding[0].code, 'low');
  assert.ok(m.component.some((x) => x.code.coding[0].code === 'spo2-scale-2' && x.valueInteger === 2), JSON.stringify(m.component));
  assert.equal((await tasks(c, q)).length, 0, 'NEWS2 4 (low) and SpO2 95 above the patient thresholds raise nothing');
});

test('readings of a patient who is not enrolled, or not within the window, give no NEWS2', async () => {
  const p = await makePatient(c, 'Window');
  await enrol(c, p, ward);
  const old = new Date(Date.now() - 3 * 3600_000).toISOString();
  const b = sitting(p, { rr: 16, spo2: 97, sbp: 120, pulse: 70, temp: 36.8 });
  b.entry[6].resource.effectiveDateTime = old;   // temperature 3 h older than the rest: no full set in 60 min
  assert.equal((await c.post('', b)).status, 200);
  const other = await makePatient(c, 'Sentinel');
  await enrol(c, other, ward);
  assert.equal((await c.post('/Observation', reading.spo2(other, 80))).status, 201);
  await until(async () => (await tasks(c, other)).length, 'the sentinel alert');
  assert.equal((await news2(c, p)).length, 0);
});

test('a patient who is not enrolled gets no alerts and no NEWS2', async () => {
  const p = await makePatient(c, 'NotEnrolled');
  assert.equal((await c.post('/Observation', reading.spo2(p, 85))).status, 201);
  assert.equal((await c.post('', sitting(p, { rr: 26, spo2: 88, oxygen: true, sbp: 86, pulse: 132, acvpu: 'V', temp: 39.5 }))).status, 200);
  const s = await makePatient(c, 'Sentinel3');
  await enrol(c, s, ward);
  assert.equal((await c.post('/Observation', reading.spo2(s, 85))).status, 201);
  await until(async () => (await tasks(c, s)).length, 'the sentinel alert');
  assert.equal((await tasks(c, p)).length, 0);
  assert.equal((await flags(c, p)).length, 0);
  assert.equal((await news2(c, p)).length, 0);
});

test('discharge (CarePlan completed) closes open alerts and stops alerting', async () => {
  const p = await makePatient(c, 'Discharge');
  const plan = await enrol(c, p, ward);
  assert.equal((await c.post('/Observation', reading.spo2(p, 91))).status, 201);
  const [t] = await until(async () => { const x = await tasks(c, p); return x.length ? x : null; }, 'an alert');
  const end = new Date().toISOString();
  const d = await c.put(`/CarePlan/${plan.id}`, { ...plan, meta: undefined, status: 'completed', period: { ...plan.period, end } });
  assert.equal(d.status, 200, d.text);
  await until(async () => (await c.get(`/Task/${t.id}`)).json.status === 'cancelled', 'the open Task cancelled');
  const f = (await c.get(`/${t.focus.reference}`)).json;
  assert.equal(f.status, 'inactive');
  // a red reading after discharge raises nothing (the sentinel proves the reading was processed)
  assert.equal((await c.post('/Observation', reading.spo2(p, 85))).status, 201);
  const s = await makePatient(c, 'Sentinel2');
  await enrol(c, s, ward);
  assert.equal((await c.post('/Observation', reading.spo2(s, 85))).status, 201);
  await until(async () => (await tasks(c, s)).length, 'the sentinel alert');
  const after = await tasks(c, p);
  assert.equal(after.length, 1);
  assert.equal(after[0].status, 'cancelled');
});

test('the monitoring-plan extension is stored as sent', async () => {
  const p = await makePatient(c);
  const subs = [{ url: 'readingsPerDay', valueInteger: 2 }, { url: 'readingTime', valueTime: '09:00:00' }, { url: 'readingTime', valueTime: '17:00:00' },
    { url: 'durationDays', valueInteger: 10 }, { url: 'escalationContact', valueContactPoint: { system: 'phone', value: '01632 960000' } }];
  const plan = await enrol(c, p, ward, { subs });
  const r = await c.get(`/CarePlan/${plan.id}`);
  assert.deepEqual(r.json.extension[0], { url: PLAN_EXT, extension: subs });
});
