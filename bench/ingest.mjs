// Transaction ingest driver: POSTs the Synthea sample transaction Bundles to a running Bevan.
// The hospital and practitioner bundles go first (once); then ROUNDS rounds of the 17 patient
// bundles with WORKERS concurrent workers (POST entries: every round stores new resources).
// Prints one JSON line: {bundles, resources, seconds, resources_per_s, failures}.
// The client is node:http with keep-alive, not fetch(): on this 2-core machine the load generator
// shares the cores with the server, and fetch (undici) spent about twice the CPU per Bundle
// (bench/README.md, Run L).
//   node bench/ingest.mjs BASE_URL DIR [WORKERS=3] [ROUNDS=5]
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';

const [base, dir, workersArg = '3', roundsArg = '5'] = process.argv.slice(2);
if (!base || !dir || !base.startsWith('http://127.0.0.1:')) {
  console.error('usage: node bench/ingest.mjs http://127.0.0.1:PORT/fhir DIR [WORKERS] [ROUNDS]');
  process.exit(2);
}
const workers = Number(workersArg);
const rounds = Number(roundsArg);
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
const shared = files.filter((f) => /^(hospital|practitioner)Information/.test(f));
const patients = files.filter((f) => !shared.includes(f));
const load = (f) => { const b = readFileSync(join(dir, f)); return { f, body: b, n: JSON.parse(b).entry.length }; };
const sharedB = shared.map(load);
const patientB = patients.map(load);

let failures = 0;
const target = new URL(base);
const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
function post(b) {
  return new Promise((resolve) => {
    let settled = false;
    const fail = (what) => { if (settled) return; settled = true; failures++; console.error(`${b.f}: ${what}`); resolve(0); };
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent,
      headers: { 'Content-Type': 'application/fhir+json', 'Content-Length': b.body.length }, timeout: 120_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (e) => fail(e.message));
      res.on('end', () => {
        if (res.statusCode !== 200) fail(`${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 300)}`);
        else if (!settled) { settled = true; resolve(b.n); }
      });
    });
    req.on('error', (e) => fail(e.message));
    req.on('timeout', () => req.destroy(new Error('no answer in 120 s')));
    req.end(b.body);
  });
}

const queue = [];
for (let r = 0; r < rounds; r++) queue.push(...patientB);
const t0 = process.hrtime.bigint();
let resources = 0;
for (const b of sharedB) { const n = await post(b); resources += n; }
let next = 0;
await Promise.all(Array.from({ length: workers }, async () => {
  for (;;) {
    const i = next++;
    if (i >= queue.length) return;
    const n = await post(queue[i]); // (not `resources += await ...`: that reads resources before the await)
    resources += n;
  }
}));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ bundles: sharedB.length + queue.length, resources, seconds: +seconds.toFixed(3),
  resources_per_s: Math.round(resources / seconds), workers, rounds, failures }));
process.exit(failures ? 1 : 0);
