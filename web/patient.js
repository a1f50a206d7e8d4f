// The patient page: a reading in a few taps (SpO2 and pulse, others optional) sent as one
// transaction Bundle, the recent readings, and the advice for the band the latest one is in
// (domain.md §2: keep monitoring / contact the GP or NHS 111 / call 999).
'use strict';
(() => {
  const B = Bevan;
  const { el } = B;
  const $ = (id) => document.getElementById(id);
  let pid = null;
  let plan = B.plan({});
  const ADVICE = {
    green: 'Your oxygen level is in the usual range. Keep taking your readings at the times you were given.',
    amber: 'Your oxygen level is lower than it should be. Contact your GP practice today, or call NHS 111.',
    red: 'Your oxygen level is very low. Call 999 now, or go to A&E.',
  };
  const message = (text, kind = 'error') => {
    const m = $('message');
    m.textContent = text || '';
    m.className = `message ${kind}`;
    m.hidden = !text;
  };

  const vital = {
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }],
  };
  const qty = (value, unit, code) => ({ value, unit, system: B.UCUM, code });
  function observation(code, extra, now) {
    return { resourceType: 'Observation', status: 'final', ...vital, code, subject: { reference: `Patient/${pid}` },
      performer: [{ reference: `Patient/${pid}` }], effectiveDateTime: now, ...extra };
  }

  async function send(ev) {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const n = (k) => { const v = String(f.get(k) || '').trim(); return v === '' ? null : Number(v); };
    const now = new Date().toISOString();
    const obs = [];
    obs.push(observation({ coding: [{ system: B.LOINC, code: '59408-5', display: 'Oxygen saturation in Arterial blood by Pulse oximetry' },
      { system: B.LOINC, code: '2708-6', display: 'Oxygen saturation in Arterial blood' },
      { system: B.SNOMED, code: '431314004', display: 'Peripheral oxygen saturation' }], text: 'SpO2' },
    { valueQuantity: qty(n('spo2'), '%', '%') }, now));
    obs.push(observation({ coding: [{ system: B.LOINC, code: '8867-4', display: 'Heart rate' }], text: 'Pulse' },
      { valueQuantity: qty(n('pulse'), 'beats/minute', '/min') }, now));
    if (n('resp') !== null) obs.push(observation({ coding: [{ system: B.LOINC, code: '9279-1', display: 'Respiratory rate' }] },
      { valueQuantity: qty(n('resp'), 'breaths/minute', '/min') }, now));
    if (n('temp') !== null) obs.push(observation({ coding: [{ system: B.LOINC, code: '8310-5', display: 'Body temperature' }] },
      { valueQuantity: qty(n('temp'), 'C', 'Cel') }, now));
    if (n('sbp') !== null) {
      const comp = [{ code: { coding: [{ system: B.LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: qty(n('sbp'), 'mmHg', 'mm[Hg]') }];
      if (n('dbp') !== null) comp.push({ code: { coding: [{ system: B.LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: qty(n('dbp'), 'mmHg', 'mm[Hg]') });
      obs.push(observation({ coding: [{ system: B.LOINC, code: '85354-9', display: 'Blood pressure panel' }] }, { component: comp }, now));
    }
    const acvpu = String(f.get('acvpu') || '');
    if (acvpu) {
      const label = ev.target.querySelector(`select[name=acvpu] option[value="${acvpu}"]`).textContent;
      obs.push(observation({ coding: [{ system: B.SNOMED, code: '1104441000000107', display: 'ACVPU (Alert Confusion Voice Pain Unresponsive) scale score' }] },
        { valueCodeableConcept: { coding: [{ system: B.SNOMED, code: acvpu, display: label }] } }, now));
    }
    const o2 = String(f.get('o2') || '');
    if (o2) obs.push(observation({ coding: [{ system: B.SNOMED, code: o2, display: o2 === '371825009' ? 'Patient on oxygen' : 'Breathing room air' }] }, {}, now));
    $('send').disabled = true;
    try {
      await B.api('POST', '', { resourceType: 'Bundle', type: 'transaction',
        entry: obs.map((r) => ({ resource: r, request: { method: 'POST', url: 'Observation' } })) });
      message('Thank you: your reading was sent to your care team.', 'info');
      await refresh();
    } catch (e) {
      message(e.status === 422 || e.status === 400 ? `Please check the numbers: ${e.message.replace(/^\d+: /, '')}` : `Sending failed: ${e.message}`);
    } finally { $('send').disabled = false; }
  }

  async function refresh() {
    const list = await B.searchAll(`Observation?subject=Patient/${pid}&code=${encodeURIComponent(`${B.LOINC}|59408-5,${B.LOINC}|2708-6,${B.LOINC}|8867-4`)}&_sort=-date&_count=40`, 1);
    const sittings = new Map();
    for (const o of list) {
      const t = B.when(o);
      const key = Math.round(t / 60000);
      const s = sittings.get(key) || { t, spo2: null, pulse: null };
      const k = B.kind(o);
      if (k === 'spo2' && s.spo2 === null) s.spo2 = B.value(o);
      if (k === 'pulse' && s.pulse === null) s.pulse = B.value(o);
      sittings.set(key, s);
    }
    const rows = [...sittings.values()].sort((a, b) => b.t - a.t).slice(0, 10);
    $('recent-table').querySelector('tbody').replaceChildren(...rows.map((s) => {
      const band = B.spo2Band(s.spo2, plan);
      return el('tr', {}, el('td', { text: new Date(s.t).toLocaleString('en-GB') }),
        el('td', { class: band ? `band-${band}` : '' }, s.spo2 === null ? '—' : `${s.spo2}%`), el('td', { text: s.pulse ?? '—' }));
    }));
    $('recent').hidden = false;
    const latest = rows.find((s) => s.spo2 !== null);
    const band = latest ? B.spo2Band(latest.spo2, plan) : null;
    const box = $('advice');
    box.hidden = !band;
    box.dataset.band = band || '';
    box.className = `panel advice band-${band || 'none'}`;
    $('advice-text').textContent = band ? ADVICE[band] : '';
  }

  async function begin(id) {
    pid = id;
    $('choose').hidden = true;
    try {
      const p = await B.get(`Patient/${pid}`);
      $('who').textContent = B.name(p);
    } catch (e) { message(`Cannot find your record: ${e.message}`); return; }
    try {
      const cps = await B.searchAll(`CarePlan?subject=Patient/${pid}&status=active&_count=10`, 1);
      const cp = cps.find((c) => (c.extension || []).some((x) => x.url === B.EXT_PLAN));
      if (cp) plan = B.plan(cp);
    } catch { /* the default thresholds */ }
    $('entry').hidden = false;
    await refresh();
  }

  for (const b of document.querySelectorAll('button.step')) {
    b.addEventListener('click', () => {
      const input = $(b.dataset.for);
      const v = Number(input.value || 0) + Number(b.dataset.step);
      if (v >= Number(input.min) && v <= Number(input.max)) input.value = String(v);
    });
  }
  $('reading').addEventListener('submit', send);
  $('choose-form').addEventListener('submit', (ev) => { ev.preventDefault(); begin($('pid').value.trim()); });
  $('signout').addEventListener('click', () => { B.signOut(); location.reload(); });

  (async () => {
    try {
      const { token, context } = await B.signIn('openid fhirUser launch/patient patient/*.cruds');
      if (token) $('signout').hidden = false;
      const id = context.patient || new URLSearchParams(location.search).get('patient');
      if (id) await begin(id);
      else $('choose').hidden = false;
    } catch (e) { message(e.message); }
  })();
})();
