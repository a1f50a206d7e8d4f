// Virtual-ward benchmark (measured, never asserted): POST latency of home readings with the ward
// service on and off, and how far the service lags behind at a sustained rate.
//   node bench/ward.mjs [--patients 2000] [--rate 200] [--seconds 20]
// Each reading is an SpO2 Observation (95-99%, and every 50th one 90%: a red alert) of a random
// enrolled patient, sent at a fixed rate (open loop) with up to 64 requests in flight. After the
// load a sentinel red reading is posted; the time until its Task appears bounds the service's lag.
import { startServer, client, SLOW } from '../tests/api/lib/server.mjs';
import { makeWard, enrol, reading, tasks } from '../tests/api/lib/ward.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const PATIENTS = arg('patients', 2000);
const RATE = arg('rate', 200);
const SECONDS = arg('seconds', 20);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function run(ward) {
  const srv = await startServer({ args: ward ? [] : ['--no-ward'] });
  const c = client(srv.base);
  try {
    const w = await makeWard(c);
    const start = new Date().toISOString();
    // enrol in transactions of 100 (Patient + CarePlan)
    const pids = [];
    for (let i = 0; i < PATIENTS; i += 100) {
      const entry = [];
      for (let k = i; k < Math.min(PATIENTS, i + 100); k++) {
        entry.push({ fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(k).padStart(12, '0')}`,
          resource: { resourceType: 'Patient', name: [{ family: `Bench${k}` }] }, request: { method: 'POST', url: 'Patient' } });
      }
      const r = await c.post('', { resourceType: 'Bundle', type: 'transaction', entry });
      if (r.status !== 200) throw new Error(r.text);
      const ids = r.json.entry.map((e) => e.response.location.split('/')[1]);
      const plans = ids.map((id) => ({ resource: {
        resourceType: 'CarePlan', status: 'active', intent: 'plan',
        category: [{ coding: [{ system: 'http://bevan.dev/fhir/CodeSystem/care-plan-category', code: 'virtual-ward' }] }],
        subject: { reference: `Patient/${id}` }, careTeam: [{ reference: `CareTeam/${w}` }], period: { start } },
      request: { method: 'POST', url: 'CarePlan' } }));
      const r2 = await c.post('', { resourceType: 'Bundle', type: 'transaction', entry: plans });
      if (r2.status !== 200) throw new Error(r2.text);
      pids.push(...ids);
    }
    const lat = [];
    let inflight = 0;
    let sent = 0;
    let failed = 0;
    const total = RATE * SECONDS;
    const t0 = performance.now();
    await new Promise((resolve) => {
      const tick = () => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
        while (sent < due && inflight < 64) {
          const p = pids[Math.floor(Math.random() * pids.length)];
          const v = sent % 50 === 49 ? 90 : 95 + Math.floor(Math.random() * 5);
          sent++;
          inflight++;
          const a = performance.now();
          c.post('/Observation', reading.spo2(p, v)).then((r) => {
            if (r.status !== 201) failed++;
            lat.push(performance.now() - a);
          }).catch(() => { failed++; }).finally(() => {
            inflight--;
            if (sent >= total && inflight === 0) resolve();
          });
        }
        if (sent < total || inflight > 0) setTimeout(tick, 2);
      };
      tick();
    });
    const elapsed = (performance.now() - t0) / 1000;
    let lag = null;
    if (ward) {
      const a = performance.now();
      const sentinel = pids[0];
      const before = (await tasks(c, sentinel)).length;
      await c.post('/Observation', reading.spo2(sentinel, 80));
      for (let i = 0; i < 2000 * SLOW; i++) {
        const t = await tasks(c, sentinel);
        if (t.length > before || t.some((x) => x.code.coding[0].code === 'spo2-red' && /SpO2 80%/.test(x.description))) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      lag = performance.now() - a;
    }
    const alerts = ward ? await c.count('Task') : 0;
    return { ward, readings: lat.length, failed, rate: lat.length / elapsed, p50: pct(lat, 50), p99: pct(lat, 99), max: pct(lat, 100), lag, alerts };
  } finally {
    await srv.stop();
  }
}

const rows = [];
for (const ward of [false, true]) rows.push(await run(ward));
console.log(`patients ${PATIENTS}, target ${RATE} readings/s for ${SECONDS} s`);
console.log('ward  readings  failed  achieved/s  POST p50 ms  p99 ms  max ms  sentinel alert after ms  Tasks');
for (const r of rows) {
  console.log(`${r.ward ? 'on ' : 'off'}   ${String(r.readings).padStart(8)}  ${String(r.failed).padStart(6)}  ${r.rate.toFixed(1).padStart(10)}  ${r.p50.toFixed(1).padStart(11)}  ${r.p99.toFixed(1).padStart(6)}  ${r.max.toFixed(1).padStart(6)}  ${r.lag === null ? '-' : r.lag.toFixed(0).padStart(23)}  ${r.alerts}`);
}
