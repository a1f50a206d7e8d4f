// Crash-safety driver: N writers against a real `bevan serve`, SIGKILL at a random moment, restart,
// verify. Used by tests/crash/crash.test.mjs (CI: 5 rounds x 8 writers) and bench/crash.sh
// (50 x 32). Also runnable directly:
//
//   node tests/crash/driver.mjs [ROUNDS] [WRITERS]      (BEVAN_BIN selects the binary)
//
// Every writer loops over three kinds of write, each carrying a unique marker
// (identifier system MARK_SYSTEM, value "w<writer>-<n>"):
//   - create a Patient (POST),
//   - update one of its own acknowledged Patients with If-Match (PUT),
//   - a transaction of 3 entries (Patient + 2 Observations referencing it), each entry tagged with the
//     transaction's marker (identifier system TX_SYSTEM).
// After the kill and a restart, the checks are:
//   - every write that got a 2xx is there byte for byte: the read of each resource returns either the
//     acknowledged version's exact bytes, or a newer version that one of our unacknowledged (in-flight)
//     writes produced; the vread of every acknowledged version returns its exact bytes;
//   - every transaction (acknowledged or not) is all or nothing: 0 or 3 resources carry its marker, and
//     an acknowledged one has all 3, byte-identical to the transaction response;
//   - no write that failed with a 4xx is there;
//   - `bevan check --data DIR` passes (run after a clean stop).
// Restart time (spawn to port file, which includes SQLite's WAL recovery) is reported, not asserted.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const SOURCE_DIR = process.env.BEVAN_SOURCE_DIR || resolve(here, '..', '..');
const BIN = process.env.BEVAN_BIN || join(SOURCE_DIR, 'build', 'bevan');
const SLOW = /asan|sanit/i.test(BIN) ? 3 : 1;
export const MARK_SYSTEM = 'urn:bevan:crash:mark';
export const TX_SYSTEM = 'urn:bevan:crash:tx';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((res) => {
    const t = setTimeout(() => res(null), ms);
    child.once('exit', (code, signal) => { clearTimeout(t); res({ code, signal }); });
  });
}

/** Start `bevan serve` on DATA; resolves {child, base, startMs, stderr()} once the port file is written. */
export async function serve(data, extraArgs = [], env = process.env) {
  const portDir = mkdtempSync(join(tmpdir(), 'bevan-crash-port-'));
  const portFile = join(portDir, 'port');
  const t0 = performance.now();
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--port-file', portFile, '--data', data, '--auth', 'off',
    '--rate-limit', '0', ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 2e6) stderr = stderr.slice(-1e6); });
  const deadline = Date.now() + 60_000 * SLOW;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`bevan serve exited early: ${stderr}`);
    if (existsSync(portFile)) {
      const txt = readFileSync(portFile, 'utf8').trim();
      if (/^\d+$/.test(txt)) {
        rmSync(portDir, { recursive: true, force: true });
        return { child, base: `http://127.0.0.1:${txt}/fhir`, startMs: performance.now() - t0, stderr: () => stderr };
      }
    }
    await sleep(5);
  }
  child.kill('SIGKILL');
  throw new Error(`no port file within the bound: ${stderr}`);
}

export async function stopClean(srv) {
  srv.child.kill('SIGTERM');
  const r = await waitExit(srv.child, 30_000 * SLOW);
  if (!r) { srv.child.kill('SIGKILL'); throw new Error('bevan did not stop after SIGTERM'); }
  if (r.code !== 0) throw new Error(`bevan exited ${r.code ?? r.signal}: ${srv.stderr().slice(-3000)}`);
  if (/AddressSanitizer|runtime error:|LeakSanitizer/.test(srv.stderr())) throw new Error(`sanitizer report: ${srv.stderr().slice(-6000)}`);
}

export function runCheck(data) {
  return new Promise((res, rej) => {
    const child = spawn(BIN, ['check', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); rej(new Error('bevan check timed out')); }, 120_000 * SLOW);
    child.on('exit', (code) => { clearTimeout(t); res({ code, out }); });
  });
}

async function http(method, url, body, headers = {}, timeoutMs = 20_000) {
  const h = { ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/fhir+json';
  const r = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs * SLOW) });
  return { status: r.status, text: await r.text(), etag: r.headers.get('etag') };
}

const uuid = (w, n, k) => `${(w + 1).toString(16).padStart(8, '0')}-${(n & 0xffff).toString(16).padStart(4, '0')}-4${(k & 0xfff).toString(16).padStart(3, '0')}-8000-${(n >>> 16).toString(16).padStart(12, '0')}`;

/**
 * The ledger of one data folder, across rounds:
 *  versions: "Type/id" -> Map(version -> exact acknowledged bytes)
 *  latest:   "Type/id" -> highest acknowledged version
 *  pending:  "Type/id" -> Set of markers of writes sent but not answered (may or may not be stored)
 *  txs:      marker -> {state: 'ack'|'pending'|'failed', entries: [{key, version, text}]}
 *  failed:   markers whose write got a 4xx (must never be found)
 */
export function newLedger() {
  return { versions: new Map(), latest: new Map(), pending: new Map(), txs: new Map(), failed: new Set(), acked: 0, seq: 0 };
}

function ack(L, key, version, text) {
  if (!L.versions.has(key)) L.versions.set(key, new Map());
  L.versions.get(key).set(version, text);
  if ((L.latest.get(key) || 0) < version) L.latest.set(key, version);
  L.acked++;
}

/** One writer: loops until stop() is true or a request fails at the transport (server killed). */
async function writer(L, base, w, round, isStopped) {
  const mine = []; // keys of Patients this writer may update (acked, not pending)
  let n = 0;
  while (!isStopped()) {
    const marker = `r${round}-w${w}-${n++}-${L.seq++}`;
    const kind = n % 5 === 0 ? 'tx' : (mine.length && n % 2 === 0 ? 'update' : 'create');
    try {
      if (kind === 'create') {
        const body = { resourceType: 'Patient', identifier: [{ system: MARK_SYSTEM, value: marker }], name: [{ family: `Crash${w}`, given: [marker] }], gender: 'unknown' };
        const r = await http('POST', `${base}/Patient`, body);
        if (r.status === 201) {
          const j = JSON.parse(r.text);
          ack(L, `Patient/${j.id}`, Number(j.meta.versionId), r.text);
          mine.push(`Patient/${j.id}`);
        } else if (r.status < 500) L.failed.add(marker);
        else throw new Error(`create: ${r.status} ${r.text.slice(0, 300)}`);
      } else if (kind === 'update') {
        const key = mine[(n * 7) % mine.length];
        const v = L.latest.get(key);
        const id = key.split('/')[1];
        const body = { resourceType: 'Patient', id, identifier: [{ system: MARK_SYSTEM, value: marker }], name: [{ family: `Crash${w}`, given: [marker] }], gender: 'other' };
        if (!L.pending.has(key)) L.pending.set(key, new Set());
        L.pending.get(key).add(marker);
        const r = await http('PUT', `${base}/${key}`, body, { 'If-Match': `W/"${v}"` });
        if (r.status === 200) {
          const j = JSON.parse(r.text);
          if (Number(j.meta.versionId) !== v + 1) throw new Error(`If-Match update of ${key} at ${v} made version ${j.meta.versionId}`);
          ack(L, key, v + 1, r.text);
          L.pending.get(key).delete(marker);
        } else if (r.status < 500) { L.failed.add(marker); L.pending.get(key).delete(marker); }
        else throw new Error(`update: ${r.status} ${r.text.slice(0, 300)}`);
      } else {
        const pu = `urn:uuid:${uuid(w, n, round)}`;
        const tag = { system: TX_SYSTEM, value: marker };
        const bundle = { resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl: pu, resource: { resourceType: 'Patient', identifier: [tag], name: [{ family: `Tx${w}` }] }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation', status: 'final', identifier: [tag], code: { text: `crash ${marker} a` }, subject: { reference: pu } }, request: { method: 'POST', url: 'Observation' } },
          { resource: { resourceType: 'Observation', status: 'final', identifier: [tag], code: { text: `crash ${marker} b` }, subject: { reference: pu } }, request: { method: 'POST', url: 'Observation' } },
        ] };
        L.txs.set(marker, { state: 'pending', entries: [] });
        const r = await http('POST', base, bundle, { Prefer: 'return=representation' });
        const tx = L.txs.get(marker);
        if (r.status === 200) {
          const j = JSON.parse(r.text);
          tx.state = 'ack';
          for (const e of j.entry) {
            const res = e.resource;
            if (!res) throw new Error(`transaction response entry without resource: ${JSON.stringify(e).slice(0, 300)}`);
            const key = `${res.resourceType}/${res.id}`;
            // The transaction response carries the stored resource; its bytes are compared as JSON
            // text of the parsed entry (the entry is embedded in the Bundle, not served alone).
            tx.entries.push({ key, version: Number(res.meta.versionId), json: JSON.stringify(res) });
            L.acked++;
          }
        } else if (r.status < 500) tx.state = 'failed';
        else throw new Error(`transaction: ${r.status} ${r.text.slice(0, 300)}`);
      }
    } catch (e) {
      if (isStopped()) return; // the kill interrupted this request: it stays pending
      if (e.name === 'TimeoutError' || /fetch failed|ECONNRESET|socket|other side closed/i.test(String(e.message) + String(e.cause))) {
        if (isStopped()) return;
      }
      throw e;
    }
  }
}

/** Verify the ledger against a running server. Returns a list of problems (empty = sound). */
export async function verify(L, base) {
  const problems = [];
  const landed = []; // in-flight updates that were stored: from now on they are what the store holds
  const ids = [...L.versions.keys()];
  const conc = 16;
  let i = 0;
  const one = async () => {
    while (i < ids.length) {
      const key = ids[i++];
      const vers = L.versions.get(key);
      const latest = L.latest.get(key);
      const r = await http('GET', `${base}/${key}`);
      if (r.status !== 200) { problems.push(`${key}: read ${r.status}`); continue; }
      const j = JSON.parse(r.text);
      const v = Number(j.meta.versionId);
      if (v === latest) {
        if (r.text !== vers.get(latest)) problems.push(`${key}: read of v${v} differs from the acknowledged bytes`);
      } else if (v > latest) {
        // only an in-flight write of ours may have made it, and only one step further
        const mark = (j.identifier || []).find((x) => x.system === MARK_SYSTEM)?.value;
        const pend = L.pending.get(key);
        if (v !== latest + 1 || !pend || !pend.has(mark)) problems.push(`${key}: read v${v} > acknowledged v${latest}, not from an in-flight write (${mark})`);
        else landed.push([key, v, r.text]);
      } else problems.push(`${key}: read v${v} < acknowledged v${latest} (acknowledged write lost)`);
      for (const [ver, text] of vers) {
        const vr = await http('GET', `${base}/${key}/_history/${ver}`);
        if (vr.status !== 200) problems.push(`${key}/_history/${ver}: vread ${vr.status}`);
        else if (vr.text !== text) problems.push(`${key}/_history/${ver}: vread differs from the acknowledged bytes`);
      }
    }
  };
  await Promise.all(Array.from({ length: conc }, one));
  for (const [key, v, text] of landed) { L.versions.get(key).set(v, text); L.latest.set(key, v); }

  const markers = [...L.txs.keys()];
  let k = 0;
  const txone = async () => {
    while (k < markers.length) {
      const m = markers[k++];
      const tx = L.txs.get(m);
      const found = [];
      for (const type of ['Patient', 'Observation']) {
        const r = await http('GET', `${base}/${type}?identifier=${encodeURIComponent(`${TX_SYSTEM}|${m}`)}&_count=10`);
        if (r.status !== 200) { problems.push(`tx ${m}: search ${type} ${r.status}`); continue; }
        for (const e of JSON.parse(r.text).entry || []) found.push(e.resource);
      }
      if (found.length !== 0 && found.length !== 3) problems.push(`tx ${m} (${tx.state}): ${found.length} of 3 resources stored (not all-or-nothing)`);
      if (tx.state === 'ack') {
        if (found.length !== 3) problems.push(`tx ${m}: acknowledged but ${found.length} of 3 resources found`);
        for (const e of tx.entries) {
          const r = await http('GET', `${base}/${e.key}/_history/${e.version}`);
          if (r.status !== 200) problems.push(`tx ${m}: ${e.key} v${e.version}: vread ${r.status}`);
          else if (JSON.stringify(JSON.parse(r.text)) !== e.json) problems.push(`tx ${m}: ${e.key} differs from the acknowledged resource`);
        }
      } else if (tx.state === 'failed' && found.length) problems.push(`tx ${m}: failed with a 4xx but stored`);
    }
  };
  await Promise.all(Array.from({ length: conc }, txone));

  // Writes answered with a 4xx must not be stored (sampled: at most 50).
  for (const m of [...L.failed].slice(0, 50)) {
    const r = await http('GET', `${base}/Patient?identifier=${encodeURIComponent(`${MARK_SYSTEM}|${m}`)}`);
    if (r.status === 200 && (JSON.parse(r.text).entry || []).length) problems.push(`write ${m} failed with a 4xx but is stored`);
  }
  return problems;
}

/**
 * Run ROUNDS crash rounds with WRITERS writers on one fresh data folder. Returns a summary
 * {rounds, acked, restartMs: [...], killedAfterMs: [...], problems: [...]}. log: a function for progress lines.
 */
export async function crashRounds({ rounds = 5, writers = 8, minRunMs = 200, maxRunMs = 1500, log = () => {} } = {}) {
  const data = mkdtempSync(join(tmpdir(), 'bevan-crash-'));
  const L = newLedger();
  const summary = { rounds, writers, acked: 0, restartMs: [], killedAfterMs: [], problems: [], data };
  let srv = await serve(data);
  try {
    for (let round = 1; round <= rounds; round++) {
      let stopped = false;
      const isStopped = () => stopped;
      const runMs = (minRunMs + Math.random() * (maxRunMs - minRunMs)) * SLOW;
      const t0 = performance.now();
      const ws = Array.from({ length: writers }, (_, w) => writer(L, srv.base, w, round, isStopped));
      const failures = [];
      const all = Promise.all(ws.map((p) => p.catch((e) => { failures.push(e); stopped = true; })));
      // The random kill moment counts from the round's first acknowledgement, so that every round
      // kills the server with writes flowing (a loaded machine can take a while to answer the first).
      const acked0 = L.acked;
      for (let w = 0; w < 2000 && L.acked === acked0 && !stopped; w++) await sleep(5);
      await Promise.race([sleep(runMs), all]);
      stopped = true;
      srv.child.kill('SIGKILL');
      summary.killedAfterMs.push(Math.round(performance.now() - t0));
      await waitExit(srv.child, 10_000);
      await all;
      if (failures.length) throw failures[0];
      if (/AddressSanitizer|runtime error:|LeakSanitizer/.test(srv.stderr())) throw new Error(`sanitizer report before the kill: ${srv.stderr().slice(-6000)}`);

      srv = await serve(data);
      summary.restartMs.push(Math.round(srv.startMs));
      const problems = await verify(L, srv.base);
      summary.problems.push(...problems.map((p) => `round ${round}: ${p}`));
      log(`round ${round}: killed after ${summary.killedAfterMs.at(-1)} ms, ${L.acked} writes acknowledged so far, ` +
        `restart ${summary.restartMs.at(-1)} ms, ${problems.length} problems`);
      if (problems.length) break;
      // Every pending write has now been resolved (stored or not): what the store holds is the truth.
      resolvePending(L);
    }
    await stopClean(srv);
    srv = null;
    const chk = await runCheck(data);
    summary.check = chk;
    if (chk.code !== 0) summary.problems.push(`bevan check failed: ${chk.out.slice(0, 2000)}`);
  } finally {
    if (srv) srv.child.kill('SIGKILL');
    summary.acked = L.acked;
    if (!summary.problems.length && !process.env.CRASH_KEEP) rmSync(data, { recursive: true, force: true });
  }
  return summary;
}

/* After a verified restart, in-flight updates that made it count as acknowledged from now on (their
 * bytes are what the server reads back), and the others as never written. Pending transactions have
 * already been checked for all-or-nothing; they are dropped. */
function resolvePending(L) {
  L.pending.clear();
  for (const [m, tx] of L.txs) if (tx.state !== 'ack') L.txs.delete(m);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const rounds = Number(process.argv[2] || 5);
  const writers = Number(process.argv[3] || 8);
  const s = await crashRounds({ rounds, writers, log: (l) => console.log(l) });
  const sorted = [...s.restartMs].sort((a, b) => a - b);
  console.log(`rounds ${rounds}, writers ${writers}: ${s.acked} writes acknowledged; restart (spawn to listening) ` +
    `median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms; check: ${s.check ? s.check.out.split('\n')[0] : 'not run'}`);
  if (s.problems.length) {
    console.log(`FAILED: ${s.problems.length} problems (data kept in ${s.data})`);
    for (const p of s.problems.slice(0, 50)) console.log(`  ${p}`);
    process.exit(1);
  }
  console.log('OK: every acknowledged write survived byte for byte; transactions all-or-nothing');
}
