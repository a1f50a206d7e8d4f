// Every documented limit at the limit and one past it (docs/api.md "Limits"): past it, a 4xx (413,
// 400, 414, 431) with an OperationOutcome in bounded time; at it, no limit error. Plus hostile
// connection patterns: 500 idle connections and slow-body senders do not stop other clients.
// Latency under that load is measured in bench/, never asserted here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, client, assertOutcome, rawUpload, SLOW } from './lib/server.mjs';

let srv;
let c;
before(async () => { srv = await startServer({ args: ['--rate-limit', '0'] }); c = client(srv.base); });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const MiB = 1024 * 1024;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Raw HTTP/1.1 exchange on a fresh socket: resolves {status, body} (or {closed: true}). Bounded. */
function raw(head, body = '', timeoutMs = 20_000) {
  return new Promise((res, rej) => {
    const s = net.connect(srv.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); rej(new Error('raw request timed out')); }, timeoutMs * SLOW);
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      const txt = buf.toString('utf8');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(txt);
      if (!m) return res({ closed: true, text: txt });
      const i = txt.indexOf('\r\n\r\n');
      let json;
      try { json = JSON.parse(txt.slice(i + 4)); } catch { json = undefined; }
      res({ status: Number(m[1]), text: txt.slice(i + 4), head: txt.slice(0, i), json });
    });
    s.write(head);
    if (body) s.write(body);
  });
}

const rawGet = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}\r\n`;

/** A Patient whose JSON text is exactly `bytes` long (padding in one given name). */
function patientOfSize(bytes) {
  const base = JSON.stringify({ resourceType: 'Patient', name: [{ given: [''] }] });
  return JSON.stringify({ resourceType: 'Patient', name: [{ given: ['x'.repeat(bytes - base.length)] }] });
}

test('body size: 16 MiB is read (no 413); 16 MiB + 1 -> 413', async () => {
  // At the limit the body is read and judged on content (here its one string is over 4 MiB: 413
  // for the string, not for the body); one byte more is refused from Content-Length alone.
  const post = (body) => raw(`POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
    `Content-Type: application/fhir+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`, body, 60_000);
  const r1 = await post(patientOfSize(16 * MiB));
  assert.equal(r1.status, 413, r1.text?.slice(0, 300));
  assert.equal(r1.json?.resourceType, 'OperationOutcome');
  assert.match(r1.text, /string/i, 'at the body limit the refusal is about the string, not the body');
  const r2 = await rawUpload(`${srv.base}/Patient`, { size: 16 * MiB + 1 });
  assert.equal(r2.status, 413, JSON.stringify(r2).slice(0, 300));
  assert.equal(JSON.parse(r2.text).resourceType, 'OperationOutcome');
  assert.doesNotMatch(r2.text, /string/i, 'one past the body limit the refusal is about the body');
  // A body below the limit made of strings under their limit is stored.
  const parts = Array.from({ length: 3 }, () => 'y'.repeat(4 * MiB - 16));
  const r3 = await c.post('/Patient', { resourceType: 'Patient', name: [{ given: parts }] });
  assert.equal(r3.status, 201, r3.text.slice(0, 300));
});

test('one JSON string: 4 MiB is accepted; 4 MiB + 1 -> 413', async () => {
  const base = JSON.stringify({ resourceType: 'Patient', name: [{ given: [''] }] }).length;
  const r1 = await c.post('/Patient', { resourceType: 'Patient', name: [{ given: ['s'.repeat(4 * MiB)] }] });
  assert.equal(r1.status, 201, `a 4 MiB string: ${r1.text.slice(0, 300)} (${base})`);
  const r2 = await c.post('/Patient', { resourceType: 'Patient', name: [{ given: ['s'.repeat(4 * MiB + 1)] }] });
  assertOutcome(r2, 413, 'a 4 MiB + 1 string');
});

test('JSON depth: 64 levels parse; 65 -> 400 "nesting too deep"', async () => {
  const nest = (n) => { let v = 'x'; for (let i = 0; i < n; i++) v = [v]; return v; };
  // root object (1) + 63 arrays = 64 levels: parsed, then refused for the unknown element only
  const r1 = await c.post('/Basic', { resourceType: 'Basic', code: { text: 'x' }, x: nest(63) });
  assertOutcome(r1, 400, 'depth 64');
  assert.doesNotMatch(r1.text, /too deep/, 'depth 64 is within the limit');
  const r2 = await c.post('/Basic', { resourceType: 'Basic', code: { text: 'x' }, x: nest(64) });
  assertOutcome(r2, 400, 'depth 65');
  assert.match(r2.text, /too deep/);
});

test('query parameters: 100 -> 200; 101 -> 400', async () => {
  const q = (n) => Array.from({ length: n }, (_, i) => `_id=x${i}`).join('&');
  const r1 = await c.get(`/Patient?${q(100)}`);
  assert.equal(r1.status, 200, r1.text.slice(0, 300));
  assertOutcome(await c.get(`/Patient?${q(101)}`), 400, '101 parameters');
});

test('URL: 8,192 bytes -> not 414; 8,193 -> 414', async () => {
  const path = '/fhir/Patient?name=';
  const r1 = await raw(rawGet(path + 'a'.repeat(8192 - path.length)));
  assert.notEqual(r1.status, 414, 'at the limit');
  assert.ok(r1.status < 500, `at the limit: ${r1.status}`);
  const r2 = await raw(rawGet(path + 'a'.repeat(8193 - path.length)));
  assert.equal(r2.status, 414, r2.text?.slice(0, 300));
  assert.equal(r2.json?.resourceType, 'OperationOutcome');
});

test('_count: 1000 is served; 1001 is clamped to 1000 (FHIR lets a server return fewer), never an error', async () => {
  const r1 = await c.get('/Patient?_count=1000');
  assert.equal(r1.status, 200);
  const r2 = await c.get('/Patient?_count=1001');
  assert.equal(r2.status, 200, r2.text.slice(0, 300));
  const self = r2.json.link.find((l) => l.relation === 'self').url;
  assert.match(self, /_count=1000\b/, 'the self link shows the count applied');
  assertOutcome(await c.get('/Patient?_count=-1'), 400, '_count=-1');
});

test('_include:iterate runs at most 8 rounds: a chain of 8 links is followed, the 9th is not', async () => {
  // p0 -> p1 -> ... -> p10 through Patient.link.other
  for (let i = 10; i >= 0; i--) {
    const body = { resourceType: 'Patient', id: `chain${i}`, ...(i < 10 ? { link: [{ other: { reference: `Patient/chain${i + 1}` }, type: 'seealso' }] } : {}) };
    const r = await c.put(`/Patient/chain${i}`, body);
    assert.ok(r.status === 200 || r.status === 201, r.text.slice(0, 300));
  }
  const r = await c.get('/Patient?_id=chain0&_include:iterate=Patient:link');
  assert.equal(r.status, 200, r.text.slice(0, 300));
  const ids = r.json.entry.filter((e) => e.search?.mode === 'include').map((e) => e.resource.id).sort();
  assert.ok(ids.length >= 8 && ids.length < 10, `included ${ids.join(',')}`);
});

test('transaction entries: 10,000 are processed; 10,001 -> 413', async () => {
  const entries = (n) => Array.from({ length: n }, () => ({ request: { method: 'GET', url: 'Patient/does-not-exist' } }));
  const r1 = await c.post('', { resourceType: 'Bundle', type: 'batch', entry: entries(10_000) }, { timeoutMs: 120_000 });
  assert.equal(r1.status, 200, r1.text.slice(0, 300));
  assert.equal(r1.json.entry.length, 10_000);
  assertOutcome(await c.post('', { resourceType: 'Bundle', type: 'batch', entry: entries(10_001) }), 413, '10,001 entries');
  assertOutcome(await c.post('', { resourceType: 'Bundle', type: 'transaction', entry: entries(10_001) }), 413, '10,001 transaction entries');
});

test('request headers: 100 -> served; 101 -> 431 with an OperationOutcome', async () => {
  // Host and Connection are two of them.
  const hs = (n) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
  const r1 = await raw(rawGet('/fhir/metadata', hs(98)));
  assert.equal(r1.status, 200, r1.text?.slice(0, 200));
  const r2 = await raw(rawGet('/fhir/metadata', hs(99)));
  assert.equal(r2.status, 431, r2.text?.slice(0, 300));
  assert.equal(r2.json?.resourceType, 'OperationOutcome');
});

test('header block over the 64 KB per-connection memory: answered by libmicrohttpd (431/414 or closed), never a crash', async () => {
  // A 40 KB bearer token fits; a 70 KB header cannot (MHD_OPTION_CONNECTION_MEMORY_LIMIT 64 KB).
  const r1 = await raw(rawGet('/fhir/metadata', `X-Big: ${'t'.repeat(40_000)}\r\n`));
  assert.equal(r1.status, 200);
  const r2 = await raw(rawGet('/fhir/metadata', `X-Big: ${'t'.repeat(70_000)}\r\n`));
  // MHD answers these itself with its own HTML body (not an OperationOutcome): documented in docs/reliability.md.
  assert.ok(r2.closed || r2.status === 431 || r2.status === 414 || r2.status === 413, `got ${r2.status}`);
  assert.equal((await c.get('/metadata')).status, 200, 'the server is still serving');
});

test('500 idle connections and 20 slow-body senders do not stop other clients', async () => {
  const socks = [];
  try {
    for (let i = 0; i < 500; i++) {
      const s = net.connect(srv.port, '127.0.0.1');
      s.on('error', () => {});
      socks.push(s);
    }
    for (let i = 0; i < 20; i++) {
      const s = net.connect(srv.port, '127.0.0.1');
      s.on('error', () => {});
      s.write('POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n{"resourceType":');
      socks.push(s);
    }
    await sleep(300);
    const drip = setInterval(() => { for (const s of socks.slice(500)) s.write(' '); }, 100);
    try {
      const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
        const r = i % 2 ? await c.get('/metadata', { timeoutMs: 10_000 }) : await c.post('/Patient', { resourceType: 'Patient', gender: 'other' }, { timeoutMs: 10_000 });
        return r.status;
      }));
      assert.ok(results.every((s) => s === 200 || s === 201), `other clients: ${results.join(',')}`);
    } finally { clearInterval(drip); }
  } finally {
    for (const s of socks) s.destroy();
  }
  assert.equal((await c.get('/metadata')).status, 200);
});
