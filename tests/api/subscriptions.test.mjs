// FHIR R4 Subscriptions: checks on write, the websocket channel (bind, bound, ping, bind errors,
// RFC 6455 protocol errors), the rest-hook channel (empty and full payloads, headers, retries,
// dead-letter, delivery that survives a restart, a hung receiver never blocks a write).
// The rest-hook receiver is a node http server on 127.0.0.1; every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, client, assertOutcome, tempDir, req, SLOW } from './lib/server.mjs';
import { connectWs, frame } from './lib/ws.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const SPO2 = 'http://loinc.org|59408-5';

function spo2(value, patient = 'Patient/p1') {
  return {
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '59408-5' }, { system: 'http://loinc.org', code: '2708-6' }] },
    subject: { reference: patient },
    effectiveDateTime: new Date().toISOString(),
    valueQuantity: { value, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
  };
}
function pulse(value) {
  return {
    resourceType: 'Observation', status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}
function sub(channel, criteria = `Observation?code=${SPO2}`) {
  return { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria, channel };
}

/** A rest-hook receiver on 127.0.0.1: records requests; mode() sets the answer (status or 'hang'). */
async function receiver() {
  const got = [];
  let answer = 200;
  const hung = [];
  const server = http.createServer((rq, rs) => {
    let body = '';
    rq.on('data', (d) => { body += d; });
    rq.on('end', () => {
      got.push({ method: rq.method, url: rq.url, headers: rq.headers, body });
      if (answer === 'hang') { hung.push(rs); return; }
      rs.writeHead(answer); rs.end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    got, url: `http://127.0.0.1:${port}/hook`, port,
    mode(a) { answer = a; },
    async waitFor(n, ms = 10_000) {
      const end = Date.now() + ms * SLOW;
      while (got.length < n && Date.now() < end) await sleep(20);
      return got.length >= n;
    },
    close() { for (const r of hung) { try { r.destroy(); } catch { /* gone */ } } server.closeAllConnections?.(); return new Promise((r) => server.close(r)); },
  };
}

let srv;
let c;
before(async () => { srv = await startServer(); c = client(srv.base); });
after(async () => { if (srv) await srv.stop(); });

test('a Subscription is checked on write: malformed ones get a 4xx OperationOutcome, valid ones become active', async () => {
  const bad = [
    [{ resourceType: 'Subscription', status: 'requested', reason: 'x', channel: { type: 'websocket' } }, 'no criteria'],
    [sub({ type: 'websocket' }, 'NotAType?x=1'), 'unknown type'],
    [sub({ type: 'websocket' }, 'Observation?nonsense-param=1'), 'unknown parameter'],
    [sub({ type: 'websocket' }, 'Observation?code=x&_include=Observation:subject'), '_include in criteria'],
    [sub({ type: 'email', endpoint: 'mailto:a@b.c' }), 'unsupported channel'],
    [sub({ type: 'rest-hook' }), 'rest-hook without endpoint'],
    [sub({ type: 'rest-hook', endpoint: 'ftp://127.0.0.1/x' }), 'non-http endpoint'],
    [sub({ type: 'rest-hook', endpoint: 'http://127.0.0.1:9/x', payload: 'application/fhir+xml' }), 'xml payload'],
    [sub({ type: 'rest-hook', endpoint: 'http://127.0.0.1:9/x', header: ['no colon here'] }), 'bad header'],
    [sub({ type: 'rest-hook', endpoint: 'http://127.0.0.1:9/x', header: ['X-A: 1\r\nX-B: 2'] }), 'header with CRLF'],
    [{ resourceType: 'Subscription', status: 'requested', criteria: `Observation?code=${SPO2}`, channel: { type: 'websocket' } }, 'no reason (R4 1..1)'],
  ];
  for (const [body, what] of bad) {
    const r = await c.post('/Subscription', body);
    assertOutcome(r, undefined, what);
    assert.ok(r.status === 400 || r.status === 422, `${what}: ${r.status}`);
  }
  // also in a transaction
  const tx = await c.post('/', { resourceType: 'Bundle', type: 'transaction', entry: [
    { resource: sub({ type: 'websocket' }, 'Nope?x=1'), request: { method: 'POST', url: 'Subscription' } }] });
  assert.ok(tx.status >= 400 && tx.status < 500, tx.text);
  const ok = await c.post('/Subscription', sub({ type: 'websocket' }));
  assert.equal(ok.status, 201, ok.text);
  assert.equal(ok.json.status, 'active');
  // a PATCH that breaks the criteria is refused
  const p = await c.patch(`/Subscription/${ok.json.id}`, [{ op: 'replace', path: '/criteria', value: 'Nope?x' }]);
  assertOutcome(p, undefined, 'patch to bad criteria');
  // the CapabilityStatement says where the websocket is
  const cs = await c.get('/metadata');
  const ext = (cs.json.rest[0].extension || []).find((e) => e.url === 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket');
  assert.equal(ext?.valueUri, '/ws');
});

test('websocket: bind -> bound, a matching change -> ping, a non-matching one -> nothing', async () => {
  const s = await c.post('/Subscription', sub({ type: 'websocket' }));
  assert.equal(s.status, 201);
  const id = s.json.id;
  const ws = await connectWs(srv.origin);
  try {
    ws.send(`bind ${id}`);
    assert.equal(await ws.next(), `bound ${id}`);
    ws.send(`bind ${id}`);   // binding twice is harmless
    assert.equal(await ws.next(), `bound ${id}`);
    const o = await c.post('/Observation', spo2(91));
    assert.equal(o.status, 201);
    assert.equal(await ws.next(5000 * SLOW), `ping ${id}`);
    // an update of a matching resource notifies again; a pulse reading does not match
    const p = await c.post('/Observation', pulse(80));
    assert.equal(p.status, 201);
    const u = await c.put(`/Observation/${o.json.id}`, { ...spo2(92), id: o.json.id });
    assert.equal(u.status, 200);
    assert.equal(await ws.next(5000 * SLOW), `ping ${id}`);
    // a transaction with two matching readings: one ping each
    const tx = await c.post('/', { resourceType: 'Bundle', type: 'transaction', entry: [
      { resource: spo2(95), request: { method: 'POST', url: 'Observation' } },
      { resource: spo2(96), request: { method: 'POST', url: 'Observation' } },
      { resource: pulse(70), request: { method: 'POST', url: 'Observation' } }] });
    assert.equal(tx.status, 200, tx.text);
    assert.equal(await ws.next(5000 * SLOW), `ping ${id}`);
    assert.equal(await ws.next(5000 * SLOW), `ping ${id}`);
    await assert.rejects(ws.next(500), /no websocket message/);
    assert.equal(ws.messages.length, 0);
  } finally { ws.close(); }
});

test('criteria select the right changes: in-memory ones (token, :not, reference, string, _id, a union) and searched ones (quantity, chain)', async () => {
  const crit = {
    A: `Observation?code=${SPO2}&subject=Patient/pA`,
    B: 'Observation?code:not=http://loinc.org|8867-4',
    C: 'Patient?name=smi',
    D: `Observation?value-quantity=${encodeURIComponent('lt90|http://unitsofmeasure.org|%')}`,
    E: 'Observation?subject.name=smith',
    F: 'Observation?_id=fixed-id-1',
    G: `Observation?combo-code=${SPO2}`, // in memory: code's and component-code's rows (a union)
  };
  const ids = {};
  const ws = await connectWs(srv.origin);
  try {
    for (const [k, cr] of Object.entries(crit)) {
      const s = await c.post('/Subscription', sub({ type: 'websocket' }, cr));
      assert.equal(s.status, 201, `${k}: ${s.text}`);
      ids[s.json.id] = k;
      ws.send(`bind ${s.json.id}`);
      assert.equal(await ws.next(), `bound ${s.json.id}`);
    }
    assert.equal((await c.put('/Patient/pA', { resourceType: 'Patient', id: 'pA', name: [{ family: 'Smith' }] })).status, 201);
    assert.equal((await c.post('/Observation', spo2(88, 'Patient/pA'))).status, 201);
    assert.equal((await c.post('/Observation', { ...pulse(70), subject: { reference: 'Patient/pA' } })).status, 201);
    assert.equal((await c.post('/Observation', spo2(95, 'Patient/pB'))).status, 201);
    assert.equal((await c.put('/Observation/fixed-id-1', { ...pulse(60), id: 'fixed-id-1' })).status, 201);
    const want = { A: 1, B: 2, C: 1, D: 1, E: 2, F: 1, G: 2 };
    const total = Object.values(want).reduce((x, y) => x + y, 0);
    const got = {};
    for (let i = 0; i < total; i++) {
      const m = await ws.next(5000 * SLOW);
      const [kind, id] = m.split(' ');
      assert.equal(kind, 'ping', m);
      got[ids[id]] = (got[ids[id]] || 0) + 1;
    }
    await assert.rejects(ws.next(400), /no websocket message/);
    assert.deepEqual(got, want);
    for (const id of Object.keys(ids)) assert.equal((await c.del(`/Subscription/${id}`)).status < 300, true);
  } finally { ws.close(); }
});

test('websocket: binding errors are answered, the connection stays usable', async () => {
  const rh = await c.post('/Subscription', sub({ type: 'rest-hook', endpoint: 'http://127.0.0.1:9/x' }));
  assert.equal(rh.status, 201);
  const ws = await connectWs(srv.origin);
  try {
    ws.send('bind does-not-exist');
    assert.match(await ws.next(), /^error does-not-exist /);
    ws.send(`bind ${rh.json.id}`);   // not a websocket Subscription
    assert.match(await ws.next(), new RegExp(`^error ${rh.json.id} `));
    ws.send('hello');
    assert.match(await ws.next(), /^error - unknown command/);
    ws.send('bind ../../etc');
    assert.match(await ws.next(), /^error - /);
    // a fragmented bind works (RFC 6455 5.4)
    const s = await c.post('/Subscription', sub({ type: 'websocket' }));
    const text = Buffer.from(`bind ${s.json.id}`);
    ws.raw(frame(1, text.subarray(0, 4), { fin: false }));
    ws.raw(frame(9, Buffer.from('hi')));      // a control frame between fragments is allowed
    ws.raw(frame(0, text.subarray(4)));
    assert.equal(await ws.next(), `bound ${s.json.id}`);
  } finally { ws.close(); }
});

test('websocket: protocol errors close with the RFC 6455 status code', async () => {
  const cases = [
    ['unmasked frame', frame(1, 'bind x', { mask: false }), 1002],
    ['reserved bits', frame(1, 'bind x', { rsv: 4 }), 1002],
    ['binary message', frame(2, Buffer.from([1, 2, 3])), 1003],
    ['invalid UTF-8', frame(1, Buffer.from([0x62, 0xff, 0xfe])), 1007],
    ['too large', frame(1, Buffer.alloc(70 * 1024, 0x61)), 1009],
    ['unknown opcode', frame(3, 'x'), 1002],
    ['continuation without start', frame(0, 'x'), 1002],
    ['fragmented ping', frame(9, 'x', { fin: false }), 1002],
  ];
  for (const [what, bytes, code] of cases) {
    const ws = await connectWs(srv.origin);
    ws.raw(bytes);
    const r = await Promise.race([ws.closed, sleep(5000 * SLOW).then(() => null)]);
    assert.ok(r, `${what}: the server did not close the connection`);
    assert.equal(r.code, code, `${what}: close code`);
  }
  // a clean close is echoed
  const ws = await connectWs(srv.origin);
  ws.close(1000);
  assert.equal((await ws.closed).code, 1000);
  // the server still works
  assert.equal((await c.get('/metadata')).status, 200);
});

test('websocket handshake: wrong requests get 4xx, a foreign Origin is refused', async () => {
  const plain = await req('GET', `${srv.origin}/ws`);
  assert.equal(plain.status, 426);
  assertOutcome(plain, 426, 'GET without upgrade');
  const post = await req('POST', `${srv.origin}/ws`, { body: 'x', headers: { 'Content-Type': 'text/plain' } });
  assertOutcome(post, 400, 'POST');
  await assert.rejects(connectWs(srv.origin, '/ws', { headers: { Origin: 'https://evil.example' } }), (e) => e.status === 403);
  const same = await connectWs(srv.origin, '/ws', { headers: { Origin: srv.origin } });
  same.close();
});

test('rest-hook: empty payload is a POST with no body; application/fhir+json is a PUT of the version, with the channel headers', async () => {
  const rx = await receiver();
  try {
    const empty = await c.post('/Subscription', sub({ type: 'rest-hook', endpoint: rx.url, header: ['Authorization: Bearer abc123', 'X-Ward: 7'] }));
    assert.equal(empty.status, 201, empty.text);
    const full = await c.post('/Subscription', sub({ type: 'rest-hook', endpoint: `${rx.url}/`, payload: 'application/fhir+json' }));
    assert.equal(full.status, 201, full.text);
    const o = await c.post('/Observation', spo2(90));
    assert.equal(o.status, 201);
    assert.ok(await rx.waitFor(2), `got ${rx.got.length} deliveries`);
    const post = rx.got.find((g) => g.method === 'POST');
    const put = rx.got.find((g) => g.method === 'PUT');
    assert.ok(post && put, JSON.stringify(rx.got.map((g) => [g.method, g.url])));
    assert.equal(post.url, '/hook');
    assert.equal(post.body, '');
    assert.equal(post.headers.authorization, 'Bearer abc123');
    assert.equal(post.headers['x-ward'], '7');
    assert.equal(put.url, `/hook/Observation/${o.json.id}`);
    assert.match(put.headers['content-type'], /application\/fhir\+json/);
    const res = JSON.parse(put.body);
    assert.equal(res.id, o.json.id);
    assert.equal(res.meta.versionId, '1');
    assert.equal(res.valueQuantity.value, 90);
    // switch both off so later tests are not disturbed
    for (const s of [empty, full]) {
      const off = await c.put(`/Subscription/${s.json.id}`, { ...s.json, status: 'off' });
      assert.equal(off.status, 200);
    }
  } finally { await rx.close(); }
});

test('rest-hook: a receiver that hangs never blocks the write that triggered the notification', async () => {
  const rx = await receiver();
  rx.mode('hang');
  try {
    const s = await c.post('/Subscription', sub({ type: 'rest-hook', endpoint: rx.url }));
    assert.equal(s.status, 201);
    const o1 = await c.post('/Observation', spo2(89));
    assert.equal(o1.status, 201);
    assert.ok(await rx.waitFor(1), 'the receiver got the notification');
    // the receiver still holds that request open: writes go on meanwhile
    for (let i = 0; i < 5; i++) assert.equal((await c.post('/Observation', spo2(88), { timeoutMs: 5000 })).status, 201);
    const off = await c.put(`/Subscription/${s.json.id}`, { ...s.json, status: 'off' });
    assert.equal(off.status, 200);
  } finally { await rx.close(); }
});

test('rest-hook: a failing receiver is retried with backoff, then the notification is dead-lettered (AuditEvent, Subscription error)', async () => {
  const data = tempDir('bevan-sub-dead-');
  const s2 = await startServer({ data, args: ['--notify-attempts', '3', '--notify-backoff-ms', '100', '--notify-timeout-ms', '2000'] });
  const c2 = client(s2.base);
  const rx = await receiver();
  rx.mode(503);
  try {
    const s = await c2.post('/Subscription', sub({ type: 'rest-hook', endpoint: rx.url }));
    assert.equal(s.status, 201);
    assert.equal((await c2.post('/Observation', spo2(85))).status, 201);
    assert.ok(await rx.waitFor(3), `attempts: ${rx.got.length}`);
    // the Subscription goes to error, with the reason
    let cur;
    for (let i = 0; i < 100; i++) {
      cur = (await c2.get(`/Subscription/${s.json.id}`)).json;
      if (cur.status === 'error') break;
      await sleep(50 * SLOW);
    }
    assert.equal(cur.status, 'error');
    assert.match(cur.error, /503/);
    const audits = await c2.get('/AuditEvent?entity=Subscription/' + s.json.id);
    assert.equal(audits.status, 200, audits.text);
    assert.equal(audits.json.entry?.length, 1, audits.text);
    assert.match(audits.json.entry[0].resource.outcomeDesc, /after 3 attempts/);
    assert.equal(rx.got.length, 3, 'no attempt after the dead-letter');
    // an error Subscription is not served any more
    assert.equal((await c2.post('/Observation', spo2(84))).status, 201);
    await sleep(500);
    assert.equal(rx.got.length, 3);
    // a receiver that is down altogether (connection refused) is dead-lettered too
    const down = await c2.post('/Subscription', sub({ type: 'rest-hook', endpoint: 'http://127.0.0.1:9/nothing-listens' }));
    assert.equal((await c2.post('/Observation', spo2(83))).status, 201);
    for (let i = 0; i < 100; i++) {
      cur = (await c2.get(`/Subscription/${down.json.id}`)).json;
      if (cur.status === 'error') break;
      await sleep(50 * SLOW);
    }
    assert.equal(cur.status, 'error');
  } finally {
    await rx.close();
    await s2.stop();
    rmSync(data, { recursive: true, force: true });
  }
});

test('rest-hook: endpoints off loopback are refused unless allowed with --notify-endpoint (no request is made)', async () => {
  const data = tempDir('bevan-sub-ssrf-');
  const rx = await receiver();
  const s2 = await startServer({ data, args: ['--notify-endpoint', `http://127.0.0.1:${rx.port}/allowed/`] });
  const c2 = client(s2.base);
  try {
    const subs = {};
    for (const [k, ep] of [['far', 'http://example.invalid/hook'], ['userinfo', `http://127.0.0.1:${rx.port}@example.invalid/x`],
      ['allowed', `http://127.0.0.1:${rx.port}/allowed/x`], ['loopback', `http://localhost:${rx.port}/other`]]) {
      const s = await c2.post('/Subscription', sub({ type: 'rest-hook', endpoint: ep }));
      assert.equal(s.status, 201, s.text);
      subs[k] = s.json.id;
    }
    assert.equal((await c2.post('/Observation', spo2(86))).status, 201);
    assert.ok(await rx.waitFor(2), `deliveries: ${rx.got.length}`);
    for (const k of ['far', 'userinfo']) {
      let cur;
      for (let i = 0; i < 100; i++) {
        cur = (await c2.get(`/Subscription/${subs[k]}`)).json;
        if (cur.status === 'error') break;
        await sleep(50 * SLOW);
      }
      assert.equal(cur.status, 'error', k);
      assert.match(cur.error, /not allowed/);
    }
    await sleep(200);
    assert.deepEqual(rx.got.map((g) => g.url).sort(), ['/allowed/x', '/other']);
  } finally {
    await rx.close();
    await s2.stop();
    rmSync(data, { recursive: true, force: true });
  }
});

test('rest-hook: a notification pending at shutdown is delivered after a restart', async () => {
  const data = tempDir('bevan-sub-restart-');
  const args = ['--notify-attempts', '10', '--notify-backoff-ms', '60000'];
  const rx = await receiver();
  rx.mode(503);
  let s1 = await startServer({ data, keepData: true, args });
  try {
    const c1 = client(s1.base);
    const s = await c1.post('/Subscription', sub({ type: 'rest-hook', endpoint: rx.url, payload: 'application/fhir+json' }));
    assert.equal(s.status, 201);
    const o = await c1.post('/Observation', spo2(87));
    assert.equal(o.status, 201);
    assert.ok(await rx.waitFor(1), 'first attempt made');
    await s1.stop();   // the next attempt would be a minute away
    s1 = null;
    rx.mode(200);
    const before = rx.got.length;
    const s2 = await startServer({ data, args });
    try {
      assert.ok(await rx.waitFor(before + 1), 'delivered after the restart');
      const last = rx.got[rx.got.length - 1];
      assert.equal(last.method, 'PUT');
      assert.equal(last.url, `/hook/Observation/${o.json.id}`);
      await sleep(300);
      assert.equal(rx.got.length, before + 1, 'delivered once');
      const cur = await client(s2.base).get(`/Subscription/${s.json.id}`);
      assert.equal(cur.json.status, 'active');
    } finally { await s2.stop(); }
  } finally {
    if (s1) await s1.stop();
    await rx.close();
    rmSync(data, { recursive: true, force: true });
  }
});

test('rest-hook: nothing stored before a Subscription existed is sent; after a restart new changes are', async () => {
  const data = tempDir('bevan-sub-cursor-');
  const rx = await receiver();
  let s1 = await startServer({ data, keepData: true });
  try {
    const c1 = client(s1.base);
    assert.equal((await c1.post('/Observation', spo2(99))).status, 201);
    const s = await c1.post('/Subscription', sub({ type: 'rest-hook', endpoint: rx.url }));
    assert.equal(s.status, 201);
    await sleep(300);
    assert.equal(rx.got.length, 0, 'an older reading is not notified');
    await s1.stop();
    s1 = null;
    // a write with the server down: import runs the same API in-process
    const s2 = await startServer({ data, args: [] });
    try {
      assert.equal((await client(s2.base).post('/Observation', spo2(80))).status, 201);
      assert.ok(await rx.waitFor(1));
      await sleep(300);
      assert.equal(rx.got.length, 1);
    } finally { await s2.stop(); }
  } finally {
    if (s1) await s1.stop();
    await rx.close();
    rmSync(data, { recursive: true, force: true });
  }
});
