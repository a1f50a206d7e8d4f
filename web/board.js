// The ward board: a ward's patients ordered by risk, their latest readings and 14-day trend,
// open alerts with acknowledge/close, a patient view, admission and discharge. Live through
// websocket Subscriptions: a new reading or alert shows without reloading.
'use strict';
(() => {
  const B = Bevan;
  const { el } = B;
  const WARD_CAT = 'http://bevan.dev/fhir/CodeSystem/care-team-category|virtual-ward';
  const CP_CAT = 'http://bevan.dev/fhir/CodeSystem/care-plan-category';
  const ALERT_SYS = 'http://bevan.dev/fhir/CodeSystem/ward-alert';
  const DAY = 86400000;
  const RANK_LABEL = ['Stable', 'Low', 'Overdue', 'Raised', 'Medium', 'High'];
  const ALERT_RANK = { 'spo2-red': 5, 'news2-high': 5, 'news2-medium': 4, 'spo2-amber': 3, 'spo2-drop': 3,
    'news2-low-medium': 3, 'overdue-escalated': 3, overdue: 2 };
  const PRIORITY_RANK = { stat: 5, asap: 4, urgent: 3, routine: 1 };

  const state = {
    ward: null,
    patients: new Map(),   // id -> {patient, careplan, plan, obs: Map(id -> Observation)}
    tasks: [],
    flags: new Map(),
    since: null,           // server time of the last sync (for incremental reading updates)
    open: null,            // patient id in the patient view
  };
  const $ = (id) => document.getElementById(id);
  const message = (text, kind = 'error') => {
    const m = $('message');
    m.textContent = text || '';
    m.className = `message ${kind}`;
    m.hidden = !text;
  };

  // ---------------------------------------------------------------- data
  async function loadWards() {
    const teams = await B.searchAll(`CareTeam?category=${encodeURIComponent(WARD_CAT)}&_count=100`);
    const sel = $('ward');
    sel.replaceChildren(...teams.map((t) => el('option', { value: t.id, text: t.name || `Ward ${t.id}` })));
    const want = new URLSearchParams(location.search).get('ward');
    state.ward = teams.find((t) => t.id === want) ? want : (teams[0] || {}).id || null;
    if (state.ward) sel.value = state.ward;
    if (!teams.length) message('No virtual ward (CareTeam with category virtual-ward) exists yet.', 'info');
  }

  async function loadReadings(pid) {
    const since = new Date(Date.now() - 14 * DAY).toISOString();
    const list = await B.searchAll(`Observation?subject=Patient/${pid}&date=ge${since}&_sort=-date&_count=500`, 4);
    const m = new Map();
    for (const o of list) if (B.kind(o)) m.set(o.id, o);
    return m;
  }

  async function loadWard() {
    if (!state.ward) { render(); return; }
    const b = await B.get(`CarePlan?care-team=CareTeam/${state.ward}&status=active&_include=CarePlan:subject&_count=500`);
    state.since = (b.meta || {}).lastUpdated || new Date().toISOString();
    const res = (b.entry || []).map((e) => e.resource);
    const pats = new Map(res.filter((r) => r.resourceType === 'Patient').map((p) => [p.id, p]));
    const next = new Map();
    for (const cp of res.filter((r) => r.resourceType === 'CarePlan')) {
      const pid = ((cp.subject || {}).reference || '').split('/')[1];
      if (!pid) continue;
      next.set(pid, { patient: pats.get(pid), careplan: cp, plan: B.plan(cp), obs: new Map() });
    }
    await Promise.all([...next.keys()].map(async (pid) => { next.get(pid).obs = await loadReadings(pid); }));
    state.patients = next;
    await loadAlerts();
    render();
  }

  async function loadAlerts() {
    if (!state.ward) return;
    const res = await B.searchAll(`Task?owner=CareTeam/${state.ward}&status=requested,accepted&_include=Task:focus&_count=500`);
    state.tasks = res.filter((r) => r.resourceType === 'Task');
    state.flags = new Map(res.filter((r) => r.resourceType === 'Flag').map((f) => [f.id, f]));
  }

  /** Readings written since the last sync: one query, applied to the patients on the board. */
  async function syncReadings() {
    const b = await B.get(`Observation?_lastUpdated=ge${encodeURIComponent(state.since)}&_sort=_lastUpdated&_count=500`);
    const changed = new Set();
    for (const e of b.entry || []) {
      const o = e.resource;
      const pid = ((o.subject || {}).reference || '').split('/')[1];
      const p = state.patients.get(pid);
      if (!p || !B.kind(o)) continue;
      p.obs.set(o.id, o);
      changed.add(pid);
      if (o.meta && o.meta.lastUpdated > state.since) state.since = o.meta.lastUpdated;
    }
    if (changed.size) render(changed);
  }

  // ---------------------------------------------------------------- derived values
  function latest(p, k) {
    let best = null;
    for (const o of p.obs.values()) if (B.kind(o) === k && (!best || B.when(o) > B.when(best))) best = o;
    return best;
  }
  function alertsOf(pid) {
    return state.tasks.filter((t) => ((t.for || {}).reference || '') === `Patient/${pid}`);
  }
  const alertCode = (t) => ((t.code || {}).coding || []).find((c) => c.system === ALERT_SYS)?.code || 'alert';
  function lastReadingMs(p) {
    let t = -Infinity;
    for (const o of p.obs.values()) if (B.kind(o) !== 'news2') t = Math.max(t, B.when(o));
    return t;
  }
  function isOverdue(pid, p) {
    if (alertsOf(pid).some((t) => alertCode(t).startsWith('overdue'))) return true;
    const last = lastReadingMs(p);
    const start = Date.parse((p.careplan.period || {}).start || '') || 0;
    const gap = DAY / Math.max(1, p.plan.readingsPerDay) + 3600000;
    return Date.now() - Math.max(last, start) > gap;
  }
  function risk(pid, p) {
    let r = 0;
    for (const t of alertsOf(pid)) r = Math.max(r, ALERT_RANK[alertCode(t)] || 1, PRIORITY_RANK[t.priority] || 0);
    const s = latest(p, 'spo2');
    const band = s ? B.spo2Band(B.value(s), p.plan) : null;
    if (band === 'red') r = Math.max(r, 5);
    else if (band === 'amber') r = Math.max(r, 3);
    const n = latest(p, 'news2');
    const nb = n ? B.news2Band(n) : null;
    r = Math.max(r, { high: 5, medium: 4, 'low-medium': 3 }[nb] || (n && B.value(n) > 0 ? 1 : 0));
    if (isOverdue(pid, p)) r = Math.max(r, 2);
    return r;
  }

  // ---------------------------------------------------------------- charts
  const charts = new Map();
  function chartData(p) {
    const rows = [...p.obs.values()].filter((o) => ['spo2', 'pulse'].includes(B.kind(o)))
      .sort((a, b) => B.when(a) - B.when(b));
    const xs = [], spo2 = [], pulse = [];
    for (const o of rows) {
      const t = Math.round(B.when(o) / 1000);
      if (!Number.isFinite(t)) continue;
      if (xs.length && xs[xs.length - 1] === t) {
        if (B.kind(o) === 'spo2') spo2[spo2.length - 1] = B.value(o); else pulse[pulse.length - 1] = B.value(o);
        continue;
      }
      xs.push(t);
      spo2.push(B.kind(o) === 'spo2' ? B.value(o) : null);
      pulse.push(B.kind(o) === 'pulse' ? B.value(o) : null);
    }
    return [xs, spo2, pulse];
  }
  /** Amber and red SpO2 bands drawn behind the lines. */
  function bandsPlugin(plan) {
    return { hooks: { drawClear: [(u) => {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      const y = (v) => u.valToPos(v, 'spo2', true);
      const band = (lo, hi, color) => {
        const y1 = Math.max(top, Math.min(top + height, y(hi)));
        const y2 = Math.max(top, Math.min(top + height, y(lo)));
        ctx.fillStyle = color;
        ctx.fillRect(left, y1, width, y2 - y1);
      };
      ctx.save();
      // SpO2 is charted in whole percent: amber is (red, amber], red is <= red
      band(plan.red + 0.5, plan.amber + 0.5, 'rgba(255, 176, 0, 0.25)');
      band(0, plan.red + 0.5, 'rgba(212, 17, 17, 0.12)');
      ctx.restore();
    }] } };
  }
  function makeChart(container, p, big) {
    const width = big ? Math.min(900, container.clientWidth || 900) : 260;
    const opts = {
      width, height: big ? 300 : 80,
      legend: { show: big },
      cursor: { show: big },
      plugins: [bandsPlugin(p.plan)],
      scales: { x: { time: true, range: () => [Math.round((Date.now() - 14 * DAY) / 1000), Math.round(Date.now() / 1000)] },
        spo2: { range: big ? [70, 100] : [82, 100] }, pulse: { range: [30, 160] } },
      axes: big ? [{}, { scale: 'spo2', label: 'SpO2 %' }, { scale: 'pulse', side: 1, label: 'Pulse /min', grid: { show: false } }]
        : [{ show: false }, { show: false, scale: 'spo2' }],
      series: [{}, { label: 'SpO2 %', scale: 'spo2', stroke: '#003087', width: 2, spanGaps: true, points: { show: big } },
        { label: 'Pulse /min', scale: 'pulse', stroke: '#7c2855', width: 1, spanGaps: true, dash: [4, 3], points: { show: false } }],
    };
    return new uPlot(opts, chartData(p), container);
  }

  // ---------------------------------------------------------------- rendering
  function cellBand(v, band) {
    return el('td', { class: band ? `band-${band}` : '' }, v === null || v === undefined ? '—' : String(v),
      band && band !== 'green' ? el('span', { class: 'sr-only', text: ` (${band})` }) : null);
  }
  function rowFor(pid, p, r) {
    const s = latest(p, 'spo2'), pu = latest(p, 'pulse'), n = latest(p, 'news2');
    const sv = s ? B.value(s) : null;
    const band = B.spo2Band(sv, p.plan);
    const nb = n ? B.news2Band(n) : null;
    const over = isOverdue(pid, p);
    const chartCell = el('td', { class: 'trend' });
    const tr = el('tr', { 'data-patient': pid, 'data-risk': String(r), class: `risk-${r}` },
      el('td', {}, el('span', { class: `risk risk-${r}`, text: RANK_LABEL[r] })),
      el('th', { scope: 'row' }, el('button', { type: 'button', class: 'link', onclick: () => openPatient(pid), text: B.name(p.patient) }),
        over ? el('span', { class: 'overdue', text: 'overdue' }) : null),
      cellBand(sv === null ? null : `${sv}%`, band),
      el('td', { class: 'pulse' }, pu ? String(B.value(pu)) : '—'),
      el('td', { class: nb ? `news2 band-${nb === 'low' ? 'green' : nb === 'low-medium' || nb === 'medium' ? 'amber' : 'red'}` : 'news2' },
        n ? `${B.value(n)}${nb ? ` (${nb})` : ''}` : '—'),
      el('td', { class: over ? 'late' : '' }, B.ago(Date.now() - lastReadingMs(p))),
      chartCell,
      el('td', {}, el('button', { type: 'button', onclick: () => openPatient(pid), 'aria-label': `View ${B.name(p.patient)}`, text: 'View' })));
    return { tr, chartCell };
  }

  function render(changed = null) {
    const tbody = $('patients').querySelector('tbody');
    const ranked = [...state.patients.entries()].map(([pid, p]) => ({ pid, p, r: risk(pid, p),
      s: (latest(p, 'spo2') && B.value(latest(p, 'spo2'))) ?? 101 }))
      .sort((a, b) => b.r - a.r || a.s - b.s || B.name(a.p.patient).localeCompare(B.name(b.p.patient)));
    const existing = new Map([...tbody.children].map((tr) => [tr.dataset.patient, tr]));
    const rows = [];
    for (const { pid, p, r } of ranked) {
      let tr = existing.get(pid);
      if (!tr || !changed || changed.has(pid) || tr.dataset.risk !== String(r)) {
        const made = rowFor(pid, p, r);
        tr = made.tr;
        if (charts.has(pid)) charts.get(pid).destroy();
        charts.set(pid, { destroy() {} });
        requestAnimationFrame(() => { charts.set(pid, makeChart(made.chartCell, p, false)); });
      }
      rows.push(tr);
    }
    for (const pid of charts.keys()) if (!state.patients.has(pid)) { charts.get(pid).destroy(); charts.delete(pid); }
    tbody.replaceChildren(...rows);
    $('count').textContent = `(${rows.length})`;
    renderAlerts();
    if (state.open && (!changed || changed.has(state.open))) renderPatient();
  }

  const drafts = new Map();   // task id -> note being typed (kept across live re-renders)
  function renderAlerts() {
    const ul = $('alerts');
    for (const k of drafts.keys()) if (!state.tasks.some((t) => t.id === k)) drafts.delete(k);
    const order = (t) => -(PRIORITY_RANK[t.priority] || 0);
    const tasks = [...state.tasks].sort((a, b) => order(a) - order(b) || String(b.authoredOn || '').localeCompare(String(a.authoredOn || '')));
    $('alert-count').textContent = `(${tasks.length})`;
    const focused = document.activeElement && ul.contains(document.activeElement) ? document.activeElement.id : null;
    ul.replaceChildren(...tasks.map((t) => {
      const pid = ((t.for || {}).reference || '').split('/')[1];
      const p = state.patients.get(pid);
      const code = alertCode(t);
      const noteId = `note-${t.id}`;
      const notes = (t.note || []).map((n) => el('li', { text: n.text }));
      return el('li', { class: `alert prio-${t.priority || 'routine'}`, 'data-task': t.id, 'data-code': code, 'data-patient': pid || '' },
        el('div', { class: 'row' },
          el('strong', { text: (t.code && t.code.text) || code }),
          el('span', { class: 'muted', text: `${t.priority || 'routine'} · ${t.status}` })),
        el('div', {}, p ? el('button', { type: 'button', class: 'link', onclick: () => openPatient(pid), text: B.name(p.patient) }) : (t.for || {}).reference || ''),
        t.description ? el('p', { class: 'muted', text: t.description }) : null,
        notes.length ? el('ul', { class: 'notes' }, notes) : null,
        el('form', { class: 'inline', onsubmit: (ev) => ev.preventDefault() },
          el('label', { for: noteId, class: 'sr-only', text: 'Note' }),
          el('input', { id: noteId, type: 'text', placeholder: 'note (optional)', autocomplete: 'off',
            value: drafts.get(t.id) || '', oninput: (ev) => drafts.set(t.id, ev.target.value) }),
          t.status === 'requested' ? el('button', { type: 'button', class: 'ack', onclick: () => updateTask(t, 'accepted', $(noteId).value), text: 'Acknowledge' }) : null,
          el('button', { type: 'button', class: 'close', onclick: () => updateTask(t, 'completed', $(noteId).value), text: 'Close' })));
    }));
    // a live update must not take the cursor away from a note being typed
    const again = focused && document.getElementById(focused);
    if (again) { again.focus(); if (again.setSelectionRange) again.setSelectionRange(again.value.length, again.value.length); }
  }

  function openPatient(pid) {
    state.open = pid;
    $('patient-view').hidden = false;
    renderPatient();
    $('pv-h').focus();
  }
  function renderPatient() {
    const p = state.patients.get(state.open);
    if (!p) { $('patient-view').hidden = true; state.open = null; return; }
    $('pv-h').textContent = B.name(p.patient);
    const pl = p.plan;
    $('pv-plan').textContent = `${pl.readingsPerDay} readings a day for ${pl.durationDays} days · NEWS2 scale ${pl.news2Scale}` +
      ` · amber ≤ ${pl.amber}% · red ≤ ${pl.red}%${pl.spo2Baseline ? ` · baseline ${pl.spo2Baseline}%` : ''}` +
      `${pl.escalation ? ` · escalate to ${pl.escalation}` : ''}`;
    const box = $('pv-chart');
    box.replaceChildren();
    makeChart(box, p, true);
    const names = { spo2: 'SpO2 %', pulse: 'Pulse /min', resp: 'Respiratory rate /min', temp: 'Temperature °C', bp: 'Blood pressure mmHg',
      acvpu: 'Consciousness', o2: 'Air or oxygen', news2: 'NEWS2' };
    const rows = [...p.obs.values()].sort((a, b) => B.when(b) - B.when(a)).map((o) => {
      const k = B.kind(o);
      const v = B.value(o);
      const band = k === 'spo2' ? B.spo2Band(v, pl) : k === 'news2' ? B.news2Band(o) : null;
      return el('tr', {}, el('td', { text: new Date(B.when(o)).toLocaleString('en-GB') }), el('td', { text: names[k] || k }),
        el('td', { class: band && k === 'spo2' ? `band-${band}` : '' }, `${v ?? '—'}${band && k === 'news2' ? ` (${band})` : ''}`));
    });
    $('pv-readings').querySelector('tbody').replaceChildren(...rows);
  }

  // ---------------------------------------------------------------- actions
  async function updateTask(t, status, note) {
    try {
      const cur = await B.get(`Task/${t.id}`);
      cur.status = status;
      if (status === 'accepted' && !cur.businessStatus) cur.businessStatus = { text: 'acknowledged' };
      const who = B.context.fhirUser ? { reference: B.context.fhirUser } : undefined;
      const text = note && note.trim() ? note.trim() : (status === 'accepted' ? 'Acknowledged' : 'Closed');
      cur.note = [...(cur.note || []), { text, time: new Date().toISOString(), ...(who ? { authorReference: who } : {}) }];
      cur.lastModified = new Date().toISOString();
      await B.api('PUT', `Task/${t.id}`, cur, { 'If-Match': `W/"${cur.meta.versionId}"` });
      drafts.delete(t.id);
      await loadAlerts();
      render(new Set());
      message(`Alert ${status === 'accepted' ? 'acknowledged' : 'closed'}.`, 'info');
    } catch (e) { message(`Could not update the alert: ${e.message}`); }
  }

  async function discharge(ev) {
    ev.preventDefault();
    const p = state.patients.get(state.open);
    if (!p) return;
    try {
      const cp = await B.get(`CarePlan/${p.careplan.id}`);
      cp.status = 'completed';
      cp.period = { ...(cp.period || {}), end: new Date().toISOString() };
      const note = $('discharge-note').value.trim();
      if (note) cp.note = [...(cp.note || []), { text: note, time: new Date().toISOString() }];
      await B.api('PUT', `CarePlan/${cp.id}`, cp, { 'If-Match': `W/"${cp.meta.versionId}"` });
      state.open = null;
      $('patient-view').hidden = true;
      $('discharge-note').value = '';
      await loadWard();
      message(`${B.name(p.patient)} discharged.`, 'info');
    } catch (e) { message(`Could not discharge: ${e.message}`); }
  }

  async function enrol(ev) {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const v = (k) => String(f.get(k) || '').trim();
    try {
      if (!state.ward) throw new Error('choose a ward first');
      const now = new Date();
      const days = Number(v('durationDays') || 14);
      const sub = [{ url: 'readingsPerDay', valueInteger: Number(v('readingsPerDay') || 3) }];
      for (const t of v('times').split(',').map((x) => x.trim()).filter(Boolean)) {
        if (!/^\d{2}:\d{2}$/.test(t)) throw new Error(`reading time '${t}' is not hh:mm`);
        sub.push({ url: 'readingTime', valueTime: `${t}:00` });
      }
      sub.push({ url: 'durationDays', valueInteger: days }, { url: 'news2Scale', valueInteger: Number(v('news2Scale') || 1) });
      if (v('decidedBy')) sub.push({ url: 'scale2DecidedBy', valueReference: { reference: `Practitioner/${v('decidedBy').replace(/^Practitioner\//, '')}` } });
      if (v('baseline')) sub.push({ url: 'spo2Baseline', valueInteger: Number(v('baseline')) });
      sub.push({ url: 'spo2AmberAtOrBelow', valueInteger: Number(v('amber') || 94) }, { url: 'spo2RedAtOrBelow', valueInteger: Number(v('red') || 92) });
      if (v('contact')) sub.push({ url: 'escalationContact', valueContactPoint: { system: 'phone', value: v('contact') } });
      const entries = [];
      let subject;
      if (v('patientId')) subject = `Patient/${v('patientId').replace(/^Patient\//, '')}`;
      else {
        if (!v('family')) throw new Error('give a family name (or an existing patient id)');
        subject = 'urn:uuid:' + crypto.getRandomValues(new Uint8Array(16)).reduce((s, b, i) => s + (i === 4 || i === 6 || i === 8 || i === 10 ? '-' : '') + b.toString(16).padStart(2, '0'), '');
        const patient = { resourceType: 'Patient', name: [{ family: v('family'), given: v('given') ? [v('given')] : undefined }] };
        if (v('birthDate')) patient.birthDate = v('birthDate');
        if (v('nhs')) patient.identifier = [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: v('nhs') }];
        entries.push({ fullUrl: subject, resource: patient, request: { method: 'POST', url: 'Patient' } });
      }
      const careplan = {
        resourceType: 'CarePlan', status: 'active', intent: 'plan', title: 'Virtual ward monitoring',
        category: [{ coding: [{ system: CP_CAT, code: 'virtual-ward' }] }],
        subject: { reference: subject }, careTeam: [{ reference: `CareTeam/${state.ward}` }],
        period: { start: now.toISOString(), end: new Date(now.getTime() + days * DAY).toISOString() },
        extension: [{ url: B.EXT_PLAN, extension: sub }],
      };
      entries.push({ resource: careplan, request: { method: 'POST', url: 'CarePlan' } });
      await B.api('POST', '', { resourceType: 'Bundle', type: 'transaction', entry: entries });
      ev.target.reset();
      await loadWard();
      message('Patient admitted to the ward.', 'info');
    } catch (e) { message(`Could not admit: ${e.message}`); }
  }

  // ---------------------------------------------------------------- start
  let pending = null;
  let alertsPending = false;
  let fullPending = false;
  function onPing(criteria) {
    if (criteria.startsWith('CarePlan')) fullPending = true;
    else if (criteria.startsWith('Task') || criteria.startsWith('Flag')) alertsPending = true;
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      const full = fullPending, alerts = alertsPending;
      fullPending = alertsPending = false;
      try {
        if (full) await loadWard();
        else {
          await syncReadings();
          if (alerts) { await loadAlerts(); render(new Set()); }
        }
      } catch (e) { message(`Update failed: ${e.message}`); }
    }, 50);
  }

  async function start() {
    try {
      const { token } = await B.signIn('openid fhirUser user/*.cruds');
      if (token) { $('signout').hidden = false; }
      await loadWards();
      await loadWard();
      B.live(['Observation', 'Task', 'Flag', 'CarePlan'], onPing, (s, why) => {
        $('live-state').textContent = s === 'live' ? 'live' : s === 'offline' ? 'offline — reconnecting' : `live updates: ${why || s}`;
        $('live-state').className = `live ${s}`;
      });
    } catch (e) { message(e.message); }
  }
  $('ward').addEventListener('change', async (ev) => {
    state.ward = ev.target.value;
    const u = new URL(location.href);
    u.searchParams.set('ward', state.ward);
    history.replaceState(null, '', u);
    state.open = null;
    $('patient-view').hidden = true;
    try { await loadWard(); } catch (e) { message(e.message); }
  });
  $('refresh').addEventListener('click', () => loadWard().catch((e) => message(e.message)));
  $('signout').addEventListener('click', () => { B.signOut(); location.reload(); });
  $('pv-close').addEventListener('click', () => { state.open = null; $('patient-view').hidden = true; });
  $('discharge').addEventListener('submit', discharge);
  $('enrol').addEventListener('submit', enrol);
  setInterval(() => render(), 60000);   // "time since the last reading" and overdue marks age
  start();
})();
