// Alert latency (issue 5): reading POST -> websocket "ping" of a Subscription, measured, never
// asserted. Starts build/bevan (or BEVAN_BIN) on 127.0.0.1 with a fresh data folder, registers
// PATIENTS patients, binds one websocket Subscription on SpO2 readings (the ward board's kind),
// then sends one sitting (SpO2 + pulse, a transaction Bundle) per reading at RATE readings/s
// (open loop) for SECONDS, from CONC concurrent connections at most. Each SpO2 Observation makes
// exactly one ping, so the k-th ping is matched to the k-th reading sent (FIFO; readings that
// share a group commit are acknowledged together, so the error of the matching is within one
// commit). Prints p50/p90/p99/max of POST->ping and of the POST itself, pings lost, and writes a
// Markdown report to bench/results/YYYY-MM-DD-alerts.md.
//   node bench/alerts.mjs            (RATE=200 SECONDS=20 PATIENTS=2000 CONC=32)
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import http from 'node:http';
import { startServer, client } from '../tests/api/lib/server.mjs';
import { connectWs } from '../tests/api/lib/ws.mjs';
import { readingBundle } from '../tests/e2e/lib/ward.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const RATE = Number(process.env.RATE || 200);
const SECONDS = Number(process.env.SECONDS || 20);
const PATIENTS = Number(process.env.PATIENTS || 2000);
const CONC = Number(process.env.CONC || 32);
const agent = new http.Agent({ keepAlive: true, maxSockets: CONC });

function post(origin, path, body) {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((res, rej) => {
    const rq = http.request(`${origin}${path}`, { method: 'POST', agent, timeout: 30_000,
      headers: { 'Content-Type': 'application/fhir+json', 'Content-Length': data.length } }, (rs) => {
      let t = '';
      rs.on('data', (d) => { t += d; });
      rs.on('end', () => res({ status: rs.statusCode, text: t }));
    });
    rq.on('error', rej);
    rq.on('timeout', () => rq.destroy(new Error('timeout')));
    rq.end(data);
  });
}
const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '—');

const srv = await startServer({ args: ['--rate-limit', '0'] });
const c = client(srv.base);
try {
  // patients, in transactions of 500
  const ids = [];
  for (let i = 0; i < PATIENTS; i += 500) {
    const entry = [];
    for (let k = i; k < Math.min(PATIENTS, i + 500); k++)
      entry.push({ resource: { resourceType: 'Patient', name: [{ family: `Bench${k}` }] }, request: { method: 'POST', url: 'Patient' } });
    const r = await c.post('/', { resourceType: 'Bundle', type: 'transaction', entry });
    if (r.status !== 200) throw new Error(`seeding: ${r.status} ${r.text.slice(0, 300)}`);
    for (const e of r.json.entry) ids.push(e.response.location.split('/')[1]);
  }
  const sub = await c.post('/Subscription', { resourceType: 'Subscription', status: 'requested', reason: 'bench',
    criteria: 'Observation?code=http://loinc.org|59408-5', channel: { type: 'websocket' } });
  if (sub.status !== 201) throw new Error(sub.text);
  const ws = await connectWs(srv.origin);
  ws.send(`bind ${sub.json.id}`);
  if ((await ws.next(5000)) !== `bound ${sub.json.id}`) throw new Error('bind failed');

  const sent = [];        // send times (ms, hrtime), in send order
  const pingAt = [];      // ping arrival times
  const postMs = [];
  let failed = 0;
  let inflight = 0;
  let skipped = 0;
  const now = () => Number(process.hrtime.bigint()) / 1e6;
  // pings: every text message after bound
  const origDeliver = ws.messages;
  const pump = async () => {
    for (;;) {
      let m;
      try { m = await ws.next(SECONDS * 1000 + 15_000); } catch { return; }
      if (m.startsWith('ping ')) pingAt.push(now());
      if (pingAt.length >= total) return;
    }
  };
  const total = Math.round(RATE * SECONDS);
  const pinger = pump();
  const t0 = now();
  let n = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((now() - t0) / 1000) * RATE));
      while (n < due) {
        if (inflight >= CONC) { skipped++; n++; continue; }   // the server cannot keep up: counted, not queued
        const i = n++;
        const pid = ids[i % ids.length];
        const body = readingBundle(pid, 90 + (i % 10), 60 + (i % 40));
        inflight++;
        const ts = now();
        sent.push(ts);
        post(srv.origin, '/fhir', body).then((r) => {
          postMs.push(now() - ts);
          if (r.status !== 200) failed++;
        }).catch(() => { failed++; }).finally(() => { inflight--; });
      }
      if (n >= total) resolve(); else setTimeout(tick, 2);
    };
    tick();
  });
  const sendEnd = now();
  const deadline = now() + 15_000;
  while ((inflight > 0 || pingAt.length < sent.length - failed) && now() < deadline) await new Promise((r) => setTimeout(r, 20));
  void origDeliver;
  const lat = [];
  for (let k = 0; k < Math.min(pingAt.length, sent.length); k++) lat.push(pingAt[k] - sent[k]);
  const achieved = sent.length / ((sendEnd - t0) / 1000);
  const lost = sent.length - failed - pingAt.length;
  const rows = [
    ['readings sent (SpO2 + pulse per transaction)', String(sent.length)],
    ['achieved rate (readings/s)', f1(achieved)],
    ['skipped (more than CONC in flight)', String(skipped)],
    ['POST failures', String(failed)],
    ['pings received', String(pingAt.length)],
    ['notifications lost', String(lost)],
    ['POST -> ping p50 (ms)', f1(pct(lat, 50))],
    ['POST -> ping p90 (ms)', f1(pct(lat, 90))],
    ['POST -> ping p99 (ms)', f1(pct(lat, 99))],
    ['POST -> ping max (ms)', f1(Math.max(...lat))],
    ['POST response p50 / p99 (ms)', `${f1(pct(postMs, 50))} / ${f1(pct(postMs, 99))}`],
  ];
  const table = ['| measure | value |', '|---|---|', ...rows.map(([a, b]) => `| ${a} | ${b} |`)].join('\n');
  console.log(table);
  const day = new Date().toISOString().slice(0, 10);
  const report = `# Alert latency (${day})\n\nMachine: ${os.cpus().length} × ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
    `${os.type()} ${os.release()}; bevan ${process.env.BEVAN_BIN || 'build/bevan'} (synchronous=FULL, default threads).\n\n` +
    `Command: \`RATE=${RATE} SECONDS=${SECONDS} PATIENTS=${PATIENTS} CONC=${CONC} node bench/alerts.mjs\`\n\n` +
    'One websocket Subscription (`Observation?code=http://loinc.org|59408-5`) bound on one connection; ' +
    'each reading is a transaction Bundle (SpO2 + pulse Observations) POSTed to /fhir for one of the patients in turn; ' +
    'latency = ping arrival − POST start, k-th ping matched to the k-th reading sent.\n\n' + table + '\n';
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', `${day}-alerts.md`), report);
  ws.close();
  await pinger.catch(() => {});
} finally {
  agent.destroy();
  await srv.stop();
}
