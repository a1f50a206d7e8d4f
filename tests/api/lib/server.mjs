// Shared helpers for Bevan's black-box API tests (node --test).
//
// startServer() runs the real binary on 127.0.0.1 with a random port (--listen 127.0.0.1:0
// --port-file F) and a fresh data folder, and returns {base, stop(), kill()}. stop() sends SIGTERM
// and asserts a clean exit (code 0, no sanitizer report on stderr). Every loop and wait here is
// bounded; every request has a timeout. Only 127.0.0.1 is ever contacted.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
export const SOURCE_DIR = process.env.BEVAN_SOURCE_DIR || resolve(here, '..', '..', '..');
export const BIN = process.env.BEVAN_BIN || join(SOURCE_DIR, 'build', 'bevan');
export const SHARED_DATA = resolve(SOURCE_DIR, '..', 'shared', 'data');
export const SYNTHEA_DIR = join(SHARED_DATA, 'synthea-r4');
export const EXAMPLES_DIR = join(SOURCE_DIR, 'node_modules', 'hl7.fhir.r4.examples');
/* Slower under sanitizers: scale waits, never the assertions. */
export const SLOW = /asan|sanit/i.test(BIN) ? 3 : 1;

const SANITIZER_MARKS = ['ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer', 'ERROR: ThreadSanitizer',
                         'ERROR: UndefinedBehaviorSanitizer'];

export function sanitizerReport(text) {
  return SANITIZER_MARKS.find((m) => text.includes(m)) || null;
}

const live = new Set();
// Every folder made here is removed when the test process exits, also when a test failed or
// never stopped its server (BEVAN_KEEP_TMP=1 keeps them for a post-mortem): runs must not fill /tmp.
const madeDirs = new Set();
process.on('exit', () => {
  for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  if (process.env.BEVAN_KEEP_TMP) return;
  for (const d of madeDirs) { try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } }
});

export function tempDir(prefix = 'bevan-test-') {
  const d = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.add(d);
  return d;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Wait (bounded) for a child to exit; resolves {code, signal} or null on timeout. */
function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((res) => {
    const t = setTimeout(() => res(null), ms);
    child.once('exit', (code, signal) => { clearTimeout(t); res({ code, signal }); });
  });
}

/**
 * Start `bevan serve` on 127.0.0.1:0. Options: data (existing folder to reuse), args (extra
 * arguments), keepData (do not delete the folder on stop), auth (true: bearer tokens required,
 * as in production; otherwise the server runs with --auth off, which is allowed on loopback).
 */
export async function startServer(opts = {}) {
  const data = opts.data || tempDir();
  const ownData = !opts.data && !opts.keepData;
  const portFile = join(tempDir('bevan-port-'), 'port');
  const args = ['serve', '--listen', '127.0.0.1:0', '--port-file', portFile, '--data', data,
    ...(opts.auth ? [] : ['--auth', 'off']), ...(opts.args || [])];
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  live.add(child);
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 4e6) stderr = stderr.slice(-2e6); });
  child.stdout.on('data', (d) => { stdout += d; if (stdout.length > 4e6) stdout = stdout.slice(-2e6); });
  child.on('exit', () => live.delete(child));

  let port = 0;
  const deadline = Date.now() + 10_000 * SLOW;   // --demo seeds before it listens
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`bevan serve exited early (${child.exitCode ?? child.signalCode}): ${stderr}`);
    if (existsSync(portFile)) {
      const txt = readFileSync(portFile, 'utf8').trim();
      if (/^\d+$/.test(txt)) { port = Number(txt); break; }
    }
    await sleep(25);
  }
  if (!port) {
    child.kill('SIGKILL');
    throw new Error(`bevan serve wrote no port file within ${10 * SLOW} s: ${stderr}`);
  }
  const origin = `http://127.0.0.1:${port}`;
  let stopped = false;
  const srv = {
    pid: child.pid,
    port,
    origin,
    base: `${origin}/fhir`,
    data,
    portFile,
    child,
    get stderr() { return stderr; },
    get stdout() { return stdout; },
    /** SIGTERM, wait (bounded), assert exit 0 and a clean stderr. */
    async stop() {
      if (stopped) return;
      stopped = true;
      child.kill('SIGTERM');
      const r = await waitExit(child, 20_000 * SLOW);
      if (!r) child.kill('SIGKILL');
      rmSync(dirname(portFile), { recursive: true, force: true });
      if (ownData) rmSync(data, { recursive: true, force: true });
      assert.ok(r, 'bevan did not exit within the bound after SIGTERM');
      assert.equal(r.signal, null, `bevan died of signal ${r.signal}; stderr:\n${stderr.slice(-4000)}`);
      const bad = sanitizerReport(stderr);
      assert.equal(bad, null, `sanitizer report in stderr:\n${stderr.slice(-8000)}`);
      assert.equal(r.code, 0, `bevan exited ${r.code}; stderr:\n${stderr.slice(-4000)}`);
    },
    /** Unconditional cleanup for after(): SIGKILL if still running. */
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      live.delete(child);
      if (!stopped) {
        stopped = true;
        rmSync(dirname(portFile), { recursive: true, force: true });
        if (ownData) rmSync(data, { recursive: true, force: true });
      }
    },
  };
  return srv;
}

/** Run a bevan subcommand (import, check, demo) to completion, bounded. */
export function runBevan(args, { timeoutMs = 120_000 } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`bevan ${args[0]} timed out: ${stderr.slice(-2000)}`)); },
      timeoutMs * SLOW);
    child.on('error', (e) => { clearTimeout(t); rej(e); });
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      live.delete(child);
      res({ code, signal, stdout, stderr, sanitizer: sanitizerReport(stderr) });
    });
  });
}

/**
 * One request with a timeout. body: an object (JSON-encoded), or a string/Buffer sent as is.
 * Returns {status, headers, text, json} (json undefined when the body is not JSON).
 */
export async function req(method, url, { headers = {}, body, timeoutMs = 30_000 } = {}) {
  const h = { ...headers };
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/fhir+json';
  }
  const r = await fetch(url, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeoutMs * SLOW) });
  const text = await r.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

/** A client bound to one server's base URL. */
export function client(base) {
  const u = (p) => (p.startsWith('http') ? p : `${base}${p.startsWith('/') ? '' : '/'}${p}`);
  return {
    base,
    get: (p, o) => req('GET', u(p), o),
    post: (p, body, o = {}) => req('POST', u(p), { ...o, body }),
    put: (p, body, o = {}) => req('PUT', u(p), { ...o, body }),
    patch: (p, body, o = {}) => req('PATCH', u(p), {
      ...o, body, headers: { 'Content-Type': 'application/json-patch+json', ...(o.headers || {}) } }),
    del: (p, o) => req('DELETE', u(p), o),
    req: (m, p, o) => req(m, u(p), o),
    /** GET Type?..._summary=count -> total */
    async count(typeAndQuery) {
      const sep = typeAndQuery.includes('?') ? '&' : '?';
      const r = await req('GET', u(`${typeAndQuery}${sep}_summary=count`));
      assert.equal(r.status, 200, `count ${typeAndQuery}: ${r.text.slice(0, 500)}`);
      assert.equal(r.json.resourceType, 'Bundle');
      assert.equal(typeof r.json.total, 'number', `no total in ${r.text.slice(0, 300)}`);
      return r.json.total;
    },
    /** Total number of versions ever stored (system history). */
    async historyTotal() {
      const r = await req('GET', u('/_history?_count=1'));
      assert.equal(r.status, 200, r.text.slice(0, 500));
      assert.equal(typeof r.json.total, 'number', 'system history has a total');
      return r.json.total;
    },
    /** Follow `next` links from a search or history URL; returns every entry (bounded pages). */
    async allPages(p, { maxPages = 10_000 } = {}) {
      const entries = [];
      let url = u(p);
      let pages = 0;
      const seen = new Set();
      while (url) {
        assert.ok(pages++ < maxPages, `more than ${maxPages} pages from ${p}`);
        assert.ok(!seen.has(url), `paging loops on ${url}`);
        seen.add(url);
        const r = await req('GET', url);
        assert.equal(r.status, 200, `${url}: ${r.text.slice(0, 500)}`);
        for (const e of r.json.entry || []) entries.push(e);
        const next = (r.json.link || []).find((l) => l.relation === 'next');
        url = next ? next.url : null;
        if (url) assert.ok(url.startsWith(`http://127.0.0.1:`), `next link is not on 127.0.0.1: ${url}`);
      }
      return { entries, pages };
    },
  };
}

/** Assert an OperationOutcome body with at least one error issue carrying diagnostics. */
export function assertOutcome(r, status, what = '') {
  if (typeof status === 'number') assert.equal(r.status, status, `${what}: expected ${status}, got ${r.status}: ${r.text.slice(0, 800)}`);
  else assert.ok(r.status >= 400 && r.status < 500, `${what}: expected a 4xx, got ${r.status}: ${r.text.slice(0, 800)}`);
  assert.ok(r.json, `${what}: body is not JSON: ${r.text.slice(0, 300)}`);
  assert.equal(r.json.resourceType, 'OperationOutcome', `${what}: ${r.text.slice(0, 300)}`);
  assert.ok(Array.isArray(r.json.issue) && r.json.issue.length > 0, `${what}: no issues`);
  const errs = r.json.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  assert.ok(errs.length > 0, `${what}: no error issue in ${r.text.slice(0, 500)}`);
  assert.ok(errs.some((i) => typeof i.diagnostics === 'string' && i.diagnostics.length > 0),
    `${what}: no diagnostics in ${r.text.slice(0, 500)}`);
  return r.json;
}

/** True when some error issue names the given path in its expression (FHIRPath style). */
export function outcomeNames(oo, path) {
  return (oo.issue || []).some((i) => (i.expression || []).some((e) => e === path || e.startsWith(`${path}.`) || e.startsWith(`${path}[`))
    || (typeof i.diagnostics === 'string' && i.diagnostics.includes(path)));
}

/**
 * Deep equality for FHIR JSON read back from the server: object member order ignored, numbers by
 * value, meta.versionId and meta.lastUpdated ignored (and an emptied meta treated as absent).
 * Returns null when equal, else a path describing the first difference.
 */
export function fhirDiff(a, b) {
  const strip = (r) => {
    if (!r || typeof r !== 'object' || Array.isArray(r)) return r;
    const c = { ...r };
    if (c.meta && typeof c.meta === 'object') {
      const m = { ...c.meta };
      delete m.versionId;
      delete m.lastUpdated;
      if (Object.keys(m).length) c.meta = m; else delete c.meta;
    }
    return c;
  };
  return diff(strip(a), strip(b), '');
}

function diff(a, b, path) {
  if (typeof a === 'number' && typeof b === 'number') return a === b ? null : `${path}: ${a} != ${b}`;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object')
    return a === b ? null : `${path}: ${JSON.stringify(a)?.slice(0, 80)} != ${JSON.stringify(b)?.slice(0, 80)}`;
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: array vs object`;
  if (Array.isArray(a)) {
    if (a.length !== b.length) return `${path}: length ${a.length} != ${b.length}`;
    for (let i = 0; i < a.length; i++) {
      const d = diff(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.join('\u0000') !== kb.join('\u0000')) return `${path}: keys {${ka}} != {${kb}}`;
  for (const k of ka) {
    const d = diff(a[k], b[k], `${path}.${k}`);
    if (d) return d;
  }
  return null;
}

/**
 * Upload a large body over a raw TCP socket, reading the answer while writing, so that an early
 * answer (413 before the body is read, then the server closes) is still observed even when the
 * upload fails with EPIPE/ECONNRESET, as curl and most clients do. chunked: Transfer-Encoding
 * chunked instead of Content-Length. Resolves {status, text} or {error}.
 */
export function rawUpload(url, { method = 'POST', size, chunked = false, timeoutMs = 60_000 }) {
  return new Promise((res) => {
    const u = new URL(url);
    assert.equal(u.hostname, '127.0.0.1');
    const sock = net.connect({ host: '127.0.0.1', port: Number(u.port) });
    let got = Buffer.alloc(0);
    let settled = false;
    let writeError = null;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const text = got.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) { res({ error: writeError || 'no response' }); return; }
      const i = text.indexOf('\r\n\r\n');
      res({ status: Number(m[1]), head: text.slice(0, i), text: i >= 0 ? got.subarray(i + 4).toString('utf8') : '' });
    };
    const timer = setTimeout(() => { writeError = writeError || 'timeout'; finish(); }, timeoutMs * SLOW);
    sock.on('data', (d) => {
      got = Buffer.concat([got, d]);
      const text = got.toString('latin1');
      const i = text.indexOf('\r\n\r\n');
      const cl = /\r\ncontent-length: *(\d+)/i.exec(text);
      if (i >= 0 && cl && got.length >= i + 4 + Number(cl[1])) finish();
    });
    sock.on('error', (e) => { writeError = e.code || String(e); });
    sock.on('close', finish);
    sock.on('connect', () => {
      sock.write(`${method} ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n`
        + 'Content-Type: application/fhir+json\r\n'
        + (chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${size}\r\n`) + '\r\n');
      // Node destroys a socket on EPIPE before reading what the server sent, so give an early
      // answer (the server may refuse by Content-Length alone) a moment to arrive before the body.
      const block = Buffer.alloc(1 << 20, 0x20); // spaces: the server must refuse by size, not by syntax
      let sent = 0;
      const pump = () => {
        while (sent < size && !settled && !writeError && !sock.destroyed) {
          const n = Math.min(block.length, size - sent);
          const piece = chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), block.subarray(0, n), Buffer.from('\r\n')])
            : block.subarray(0, n);
          sent += n;
          if (!sock.write(piece)) { sock.once('drain', pump); return; }
        }
        if (sent >= size && chunked && !sock.destroyed) sock.write('0\r\n\r\n');
      };
      // With a Content-Length the server refuses by the headers alone: wait long enough for that
      // answer even on a loaded machine (ASan beside other tests took over 900 ms once). A chunked
      // body can only be refused once it has been read past the cap.
      setTimeout(() => { if (!got.length) pump(); }, (chunked ? 300 : 5000) * SLOW);
    });
  });
}

/** Run async fn over items with `limit` concurrent workers; results in order. */
export async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Luhn-like NHS Modulus 11 check (domain.md §3.3). */
export function nhsNumberValid(s) {
  if (!/^\d{10}$/.test(s)) return false;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += Number(s[i]) * (10 - i);
  let check = 11 - (sum % 11);
  if (check === 11) check = 0;
  if (check === 10) return false;
  return check === Number(s[9]);
}

/** A unique token for identifiers, so tests on one server do not collide. */
let uniq = 0;
export function unique(prefix = 'u') {
  uniq += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${uniq}`;
}

export const NHS_SYSTEM = 'https://fhir.nhs.uk/Id/nhs-number';
export const TEST_SYSTEM = 'http://example.org/bevan-test';
