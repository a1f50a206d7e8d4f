// Soak: mixed traffic (reads, searches, creates, If-Match updates, transactions) at a steady rate
// against a real `bevan serve` for N seconds; samples the server's RSS and open file descriptors
// from /proc every few seconds; reports p50/p99 per interaction and the growth of RSS and fds
// after warm-up. Exit status 1 on any 5xx or transport error, or when fds (or RSS, unless
// SOAK_NO_RSS=1) grew more than 5 % after warm-up.
//
//   node bench/soak/soak.mjs [SECONDS=1800] [RATE=200 req/s] [--json OUT]
//   (BEVAN_BIN selects the binary; SOAK_WARMUP fraction of the run, default 0.3)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.BEVAN_BIN || join(resolve(here, '..', '..'), 'build', 'bevan');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function soak({ seconds = 1800, rate = 200, warmup = Number(process.env.SOAK_WARMUP || 0.3), sampleMs = 2000, log = console.log } = {}) {
  const data = mkdtempSync(join(tmpdir(), 'bevan-soak-'));
  const portFile = join(data, 'port');
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--port-file', portFile, '--data', join(data, 'db'), '--rate-limit', '0', '--auth', 'off'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 1e6) stderr = stderr.slice(-5e5); });
  try {
    let port = 0;
    for (let i = 0; i < 400 && !port; i++) {
      if (existsSync(portFile) && /^\d+$/.test(readFileSync(portFile, 'utf8').trim())) port = Number(readFileSync(portFile, 'utf8').trim());
      else await sleep(25);
    }
    if (!port) throw new Error(`server did not start: ${stderr}`);
    const base = `http://127.0.0.1:${port}/fhir`;
    const stats = new Map(); // kind -> latencies
    const bad = [];
    const call = async (kind, method, url, body, headers = {}) => {
      const t0 = performance.now();
      let r;
      try {
        r = await fetch(url, { method, headers: body ? { 'Content-Type': 'application/fhir+json', ...headers } : headers,
          body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(30_000) });
        const text = await r.text();
        const ms = performance.now() - t0;
        if (!stats.has(kind)) stats.set(kind, []);
        stats.get(kind).push(ms);
        if (r.status >= 500) bad.push(`${kind}: ${r.status} ${text.slice(0, 200)}`);
        return { status: r.status, text };
      } catch (e) {
        bad.push(`${kind}: ${e.message}`);
        return { status: 0, text: '' };
      }
    };
    // seed
    const pats = [];
    for (let i = 0; i < 200; i++) {
      const r = await call('seed', 'POST', `${base}/Patient`, { resourceType: 'Patient', name: [{ family: `Soak${i % 37}`, given: ['A'] }], gender: i % 2 ? 'male' : 'female', birthDate: `19${50 + (i % 50)}-01-01` });
      if (r.status === 201) { const j = JSON.parse(r.text); pats.push({ id: j.id, v: 1 }); }
    }
    stats.delete('seed');
    const samples = [];
    const sample = () => {
      try {
        const st = readFileSync(`/proc/${child.pid}/status`, 'utf8');
        const rss = Number(/VmRSS:\s+(\d+)/.exec(st)[1]) * 1024;
        // open descriptors, split: sockets (client connections: bounded by the client's concurrency)
        // and the rest (database files, WAL, pipes), which must stay flat
        let socks = 0, fds = 0;
        for (const f of readdirSync(`/proc/${child.pid}/fd`)) {
          let l = '';
          try { l = readlinkSync(`/proc/${child.pid}/fd/${f}`); } catch { continue; }
          if (l.startsWith('socket:')) socks++; else fds++;
        }
        samples.push({ t: performance.now(), rss, fds, socks });
      } catch { /* process gone */ }
    };
    const t0 = performance.now();
    sample();
    const sampler = setInterval(sample, sampleMs);
    let n = 0, dropped = 0;
    const inflight = new Set();
    const interval = 1000 / rate;
    let next = performance.now();
    const one = async (k) => {
      const p = pats[k % pats.length];
      switch (k % 10) {
      case 0: case 1: case 2: await call('read', 'GET', `${base}/Patient/${p.id}`); break;
      case 3: await call('search-family', 'GET', `${base}/Patient?family=soak${k % 37}&_count=10`); break;
      case 4: await call('search-obs', 'GET', `${base}/Observation?subject=Patient/${p.id}&code=http://loinc.org|8867-4&_count=10`); break;
      case 5: case 6: {
        const r = await call('create', 'POST', `${base}/Observation`, { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          subject: { reference: `Patient/${p.id}` }, valueQuantity: { value: 60 + (k % 40), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' }, effectiveDateTime: '2026-01-01T10:00:00Z' });
        void r; break;
      }
      case 7: {
        const cur = await call('read', 'GET', `${base}/Patient/${p.id}`);
        if (cur.status !== 200) break;
        const j = JSON.parse(cur.text);
        const r = await call('update', 'PUT', `${base}/Patient/${p.id}`, { ...j, gender: k % 2 ? 'male' : 'female' }, { 'If-Match': `W/"${j.meta.versionId}"` });
        if (r.status !== 200 && r.status !== 412) bad.push(`update: ${r.status}`);
        break;
      }
      case 8: await call('transaction', 'POST', base, { resourceType: 'Bundle', type: 'transaction', entry: [
        { fullUrl: 'urn:uuid:0a0e0a1c-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family: `Soak${k % 37}` }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'soak' }, subject: { reference: 'urn:uuid:0a0e0a1c-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
      ] }); break;
      default: await call('history', 'GET', `${base}/Patient/${p.id}/_history?_count=5`); break;
      }
    };
    let lastLog = t0;
    while (performance.now() - t0 < seconds * 1000) {
      const now = performance.now();
      if (now < next) { await sleep(Math.min(50, next - now)); continue; }
      next += interval;
      if (inflight.size >= 64) { dropped++; continue; } // the server is behind: drop (counted below), never queue unboundedly
      const p = one(n++).finally(() => inflight.delete(p));
      inflight.add(p);
      if (now - lastLog > 30_000) {
        lastLog = now;
        const s = samples.at(-1);
        log(`soak: ${Math.round((now - t0) / 1000)} s, ${n} requests, RSS ${(s.rss / 1e6).toFixed(1)} MB, fds ${s.fds} + ${s.socks} sockets, 5xx/errors ${bad.length}`);
      }
    }
    await Promise.all(inflight);
    clearInterval(sampler);
    sample();
    const pct = (a, q) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
    const per = {};
    for (const [k, a] of stats) per[k] = { n: a.length, p50: +pct(a, 0.5).toFixed(2), p99: +pct(a, 0.99).toFixed(2) };
    const warmEnd = t0 + warmup * seconds * 1000;
    const after = samples.filter((s) => s.t >= warmEnd);
    const w = Math.max(1, Math.floor(after.length * 0.1));
    const head = after.slice(0, w), tail = after.slice(-w);
    const maxOf = (a, f) => Math.max(...a.map(f));
    const rssGrowth = maxOf(tail, (s) => s.rss) / maxOf(head, (s) => s.rss) - 1;
    const fdGrowth = maxOf(tail, (s) => s.fds) / maxOf(head, (s) => s.fds) - 1;
    return { seconds, rate, requests: n, dropped, achieved: n / seconds, bad, maxSocks: Math.max(...samples.map((x) => x.socks)), per, samples, rssGrowth, fdGrowth,
      rssStart: samples[0].rss, rssAfterWarmup: maxOf(head, (s) => s.rss), rssEnd: maxOf(tail, (s) => s.rss),
      fdsAfterWarmup: maxOf(head, (s) => s.fds), fdsEnd: maxOf(tail, (s) => s.fds), stderr };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => { const t = setTimeout(() => { child.kill('SIGKILL'); r(); }, 20_000); child.once('exit', () => { clearTimeout(t); r(); }); });
    rmSync(data, { recursive: true, force: true });
  }
}

export function report(s) {
  const lines = [];
  lines.push(`| interaction | requests | p50 ms | p99 ms |`, `|---|---|---|---|`);
  for (const [k, v] of Object.entries(s.per)) lines.push(`| ${k} | ${v.n} | ${v.p50} | ${v.p99} |`);
  lines.push('', `${s.requests} requests in ${s.seconds} s (target ${s.rate}/s, achieved ${s.achieved.toFixed(0)}/s); 5xx/transport errors: ${s.bad.length}`,
    `RSS: ${(s.rssStart / 1e6).toFixed(1)} MB at start, ${(s.rssAfterWarmup / 1e6).toFixed(1)} MB after warm-up, ${(s.rssEnd / 1e6).toFixed(1)} MB at the end (${(100 * s.rssGrowth).toFixed(1)} % after warm-up)`,
    `open fds other than sockets: ${s.fdsAfterWarmup} after warm-up, ${s.fdsEnd} at the end (${(100 * s.fdGrowth).toFixed(1)} %); sockets at most ${s.maxSocks} (client concurrency is capped at 64); ${s.dropped} request slots skipped because 64 were in flight`);
  return lines.join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const seconds = Number(process.argv[2] || 1800);
  const rate = Number(process.argv[3] || 200);
  const s = await soak({ seconds, rate });
  const out = report(s);
  console.log(out);
  const ji = process.argv.indexOf('--json');
  if (ji > 0) writeFileSync(process.argv[ji + 1], JSON.stringify({ ...s, stderr: undefined, machine: { cpus: cpus().length, mem: totalmem() } }, null, 1));
  const fail = s.bad.length > 0 || s.fdGrowth > 0.05 || (!process.env.SOAK_NO_RSS && s.rssGrowth > 0.05);
  if (s.bad.length) console.log(`errors: ${s.bad.slice(0, 10).join('; ')}`);
  console.log(fail ? 'SOAK FAILED' : 'soak ok');
  process.exit(fail ? 1 : 0);
}
