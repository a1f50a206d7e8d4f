// Shared by the Bevan web pages: sign-in (SMART App Launch: authorization code + PKCE S256,
// only when the server advertises an authorization endpoint), FHIR calls with the token, and
// live updates over the R4 websocket Subscription channel. No build step, no framework.
'use strict';

const Bevan = (() => {
  const ORIGIN = location.origin;
  const BASE = `${ORIGIN}/fhir`;
  const CLIENT_ID = 'bevan-web';
  const KEY = 'bevan.smart.' + location.pathname;
  let token = null;
  let context = {};

  // ---- SHA-256 for PKCE where crypto.subtle is missing (plain http on a non-local host) ----
  function sha256Fallback(bytes) {
    const K = new Uint32Array([
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
      0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
      0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
      0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
      0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
      0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
      0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2]);
    const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const l = bytes.length;
    const n = ((l + 9 + 63) >> 6) << 6;
    const m = new Uint8Array(n);
    m.set(bytes);
    m[l] = 0x80;
    const dv = new DataView(m.buffer);
    dv.setUint32(n - 4, (l * 8) >>> 0);
    dv.setUint32(n - 8, Math.floor(l / 0x20000000));
    const w = new Uint32Array(64);
    const r = (x, k) => (x >>> k) | (x << (32 - k));
    for (let o = 0; o < n; o += 64) {
      for (let i = 0; i < 16; i++) w[i] = dv.getUint32(o + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = r(w[i - 15], 7) ^ r(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = r(w[i - 2], 17) ^ r(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, h] = H;
      for (let i = 0; i < 64; i++) {
        const t1 = (h + (r(e, 6) ^ r(e, 11) ^ r(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((r(a, 2) ^ r(a, 13) ^ r(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        h = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
    }
    const out = new Uint8Array(32);
    const odv = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) odv.setUint32(i * 4, H[i]);
    return out;
  }
  async function sha256(bytes) {
    if (globalThis.crypto && crypto.subtle) return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return sha256Fallback(bytes);
  }
  const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
  const redirectUri = () => ORIGIN + location.pathname;

  /**
   * Sign in if the server wants it. Resolves {token, context} (token null with auth off).
   * scope: the SMART scopes the page asks for. May navigate away (to the authorization page).
   */
  async function signIn(scope) {
    let conf = null;
    try {
      const r = await fetch(`${BASE}/.well-known/smart-configuration`, { headers: { Accept: 'application/json' } });
      if (r.ok) conf = await r.json();
    } catch { conf = null; }
    if (!conf || !conf.authorization_endpoint || !conf.token_endpoint) return { token: null, context: {} };
    const saved = sessionStorage.getItem(KEY);
    if (saved) {
      const s = JSON.parse(saved);
      if (s.token && (!s.expires || s.expires > Date.now() + 10_000)) {
        token = s.token; context = s.context || {};
        return { token, context };
      }
    }
    const q = new URLSearchParams(location.search);
    const pend = JSON.parse(sessionStorage.getItem(KEY + '.pending') || 'null');
    if (q.get('code') && pend && q.get('state') === pend.state) {
      const body = new URLSearchParams({ grant_type: 'authorization_code', code: q.get('code'),
        redirect_uri: redirectUri(), client_id: CLIENT_ID, code_verifier: pend.verifier });
      const r = await fetch(conf.token_endpoint, { method: 'POST', body,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' } });
      const t = await r.json().catch(() => ({}));
      if (!r.ok || !t.access_token) throw new Error(`sign-in failed: ${t.error_description || t.error || r.status}`);
      token = t.access_token;
      context = { patient: t.patient, fhirUser: t.fhirUser, scope: t.scope };
      sessionStorage.setItem(KEY, JSON.stringify({ token, context,
        expires: t.expires_in ? Date.now() + t.expires_in * 1000 : 0 }));
      sessionStorage.removeItem(KEY + '.pending');
      history.replaceState(null, '', location.pathname + (pend.search || ''));
      return { token, context };
    }
    if (q.get('error')) throw new Error(`sign-in refused: ${q.get('error_description') || q.get('error')}`);
    const verifier = randomString(48);
    const challenge = b64url(await sha256(new TextEncoder().encode(verifier)));
    const state = randomString(16);
    sessionStorage.setItem(KEY + '.pending', JSON.stringify({ state, verifier, search: location.search }));
    const u = new URL(conf.authorization_endpoint, ORIGIN);
    u.search = new URLSearchParams({ response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirectUri(),
      scope, state, aud: BASE, code_challenge: challenge, code_challenge_method: 'S256' }).toString();
    location.assign(u.toString());
    return new Promise(() => {});   // navigating away
  }

  function signOut() { sessionStorage.removeItem(KEY); token = null; }

  /** A FHIR call: path relative to /fhir (or absolute). Resolves parsed JSON; throws with the OperationOutcome text. */
  async function api(method, path, body, headers = {}) {
    const h = { Accept: 'application/fhir+json', ...headers };
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h['Content-Type'] = 'application/fhir+json';
    const url = path.startsWith('http') ? path : `${BASE}/${path.replace(/^\//, '')}`;
    const r = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    if (!r.ok) {
      const msg = json && json.issue ? json.issue.map((i) => i.diagnostics || i.code).join('; ') : text.slice(0, 300);
      const e = new Error(`${r.status}: ${msg}`);
      e.status = r.status; e.outcome = json;
      throw e;
    }
    return json;
  }
  const get = (p) => api('GET', p);
  /** Every resource of a search (follows next links, bounded). */
  async function searchAll(p, maxPages = 20) {
    const out = [];
    let b = await get(p);
    for (let i = 0; b && i < maxPages; i++) {
      for (const e of b.entry || []) if (e.resource) out.push(e.resource);
      const next = (b.link || []).find((l) => l.relation === 'next');
      if (!next) break;
      b = await get(next.url);
    }
    return out;
  }

  /**
   * Live updates: creates websocket Subscriptions for the given criteria (one per resource type)
   * and calls onPing(criteria) for each "ping". Reconnects (bounded backoff) and re-binds.
   * Returns {close()}; the Subscriptions end by themselves (Subscription.end) if the page dies.
   */
  function live(criteriaList, onPing, onState = () => {}) {
    let ws = null;
    let closed = false;
    let delay = 1000;
    const subs = new Map();   // id -> criteria
    async function ensureSubs() {
      for (const criteria of criteriaList) {
        if ([...subs.values()].includes(criteria)) continue;
        const end = new Date(Date.now() + 12 * 3600 * 1000).toISOString();
        const s = await api('POST', 'Subscription', { resourceType: 'Subscription', status: 'requested',
          reason: `Bevan web page ${location.pathname}`, criteria, end, channel: { type: 'websocket' } });
        subs.set(s.id, criteria);
      }
    }
    async function connect() {
      if (closed) return;
      try {
        await ensureSubs();
      } catch (e) { onState('error', e.message); setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); return; }
      ws = new WebSocket(`${ORIGIN.replace(/^http/, 'ws')}/ws`);
      ws.onopen = () => {
        delay = 1000;
        for (const id of subs.keys()) ws.send(token ? `bind-with-token ${id} ${token}` : `bind ${id}`);
      };
      ws.onmessage = (ev) => {
        const [kind, id] = String(ev.data).split(' ');
        if (kind === 'bound') { onState('live'); return; }
        if (kind === 'ping' && subs.has(id)) { onPing(subs.get(id)); return; }
        if (kind === 'error') {
          // the Subscription is gone (expired, switched off): make a new one on the next connect
          if (subs.has(id)) subs.delete(id);
          onState('error', String(ev.data));
          ws.close();
        }
      };
      ws.onclose = () => {
        onState('offline');
        if (!closed) { setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); }
      };
    }
    connect();
    window.addEventListener('pagehide', () => {
      closed = true;
      for (const id of subs.keys()) {
        const h = token ? { Authorization: `Bearer ${token}` } : {};
        fetch(`${BASE}/Subscription/${id}`, { method: 'DELETE', keepalive: true, headers: h }).catch(() => {});
      }
    });
    return { close() { closed = true; if (ws) ws.close(); }, subscriptions: subs };
  }

  // ---- small shared helpers ----
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : document.createTextNode(String(k)));
    return e;
  };
  const ago = (ms) => {
    if (!Number.isFinite(ms)) return '—';
    const m = Math.round(ms / 60000);
    if (m < 1) return 'just now';
    if (m < 60) return `${m} min ago`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min ago`;
    return `${Math.floor(h / 24)} days ago`;
  };
  const hasCode = (cc, system, code) => !!(cc && (cc.coding || []).some((c) => c.system === system && c.code === code));
  const LOINC = 'http://loinc.org';
  const SNOMED = 'http://snomed.info/sct';
  const UCUM = 'http://unitsofmeasure.org';
  const EXT_PLAN = 'http://bevan.dev/fhir/StructureDefinition/monitoring-plan';
  /** The monitoring plan of a CarePlan (defaults per the ward conventions). */
  function plan(cp) {
    const ext = (cp.extension || []).find((e) => e.url === EXT_PLAN);
    const sub = (n) => (ext && (ext.extension || []).find((e) => e.url === n)) || {};
    const num = (n, d) => { const s = sub(n); const v = s.valueInteger ?? s.valueDecimal ?? s.valuePositiveInt; return v === undefined ? d : Number(v); };
    return {
      readingsPerDay: num('readingsPerDay', 3),
      durationDays: num('durationDays', 14),
      news2Scale: num('news2Scale', 1),
      spo2Baseline: num('spo2Baseline', undefined),
      amber: num('spo2AmberAtOrBelow', 94),
      red: num('spo2RedAtOrBelow', 92),
      escalation: sub('escalationContact').valueString || (sub('escalationContact').valueContactPoint || {}).value || '',
    };
  }
  /** What a reading is, from its code (domain.md §3.1). */
  function kind(o) {
    const c = o.code;
    if (hasCode(c, LOINC, '59408-5') || hasCode(c, LOINC, '2708-6')) return 'spo2';
    if (hasCode(c, LOINC, '8867-4')) return 'pulse';
    if (hasCode(c, LOINC, '9279-1')) return 'resp';
    if (hasCode(c, LOINC, '8310-5')) return 'temp';
    if (hasCode(c, LOINC, '85354-9')) return 'bp';
    if (hasCode(c, SNOMED, '1104441000000107')) return 'acvpu';
    if (hasCode(c, SNOMED, '722742002') || hasCode(c, SNOMED, '371825009')) return 'o2';
    if (hasCode(c, SNOMED, '1104051000000101')) return 'news2';
    return null;
  }
  const when = (o) => Date.parse(o.effectiveDateTime || o.effectiveInstant || (o.effectivePeriod || {}).start || (o.meta || {}).lastUpdated);
  function value(o) {
    if (o.valueQuantity) return o.valueQuantity.value;
    if (o.valueInteger !== undefined) return o.valueInteger;
    if (kind(o) === 'bp') {
      const s = (o.component || []).find((x) => hasCode(x.code, LOINC, '8480-6'));
      const d = (o.component || []).find((x) => hasCode(x.code, LOINC, '8462-4'));
      return s ? `${s.valueQuantity?.value}/${d?.valueQuantity?.value ?? '?'}` : null;
    }
    if (o.valueCodeableConcept) return o.valueCodeableConcept.text || o.valueCodeableConcept.coding?.[0]?.display || o.valueCodeableConcept.coding?.[0]?.code;
    if (kind(o) === 'o2') return hasCode(o.code, SNOMED, '371825009') ? 'oxygen' : 'air';
    return null;
  }
  /** Oximetry band of an SpO2 value with a plan's thresholds. */
  const spo2Band = (v, p) => (v === undefined || v === null ? null : v <= p.red ? 'red' : v <= p.amber ? 'amber' : 'green');
  const news2Band = (o) => {
    const i = (o.interpretation || []).flatMap((x) => x.coding || []).find((c) => c.system === 'http://bevan.dev/fhir/CodeSystem/news2-band');
    return i ? i.code : null;
  };
  const name = (p) => {
    if (!p) return '?';
    const n = (p.name || [])[0] || {};
    return n.text || [...(n.given || []), n.family].filter(Boolean).join(' ') || `Patient ${p.id}`;
  };

  return { signIn, signOut, api, get, searchAll, live, el, ago, plan, kind, when, value, spo2Band, news2Band, name,
    hasCode, LOINC, SNOMED, UCUM, EXT_PLAN, BASE, get token() { return token; }, get context() { return context; } };
})();
