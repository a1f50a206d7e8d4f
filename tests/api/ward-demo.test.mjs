// `bevan demo --ward N`: a virtual ward with 14 days of readings; when served, the ward service
// scores NEWS2 and raises the expected alerts (docs/ward.md). The clock is fixed with the TEST-ONLY
// BEVAN_TEST_NOW so the demo's "now" and the server's agree.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, client, runBevan, tempDir } from './lib/server.mjs';
import { until, makePatient, enrol, reading, tasks, news2, alertCode, CP_CAT } from './lib/ward.mjs';

const root = tempDir('bevan-ward-demo-');
process.env.BEVAN_TEST_NOW = '2026-03-10T21:00:00Z';
process.env.BEVAN_WARD_TICK_MS = '200';
after(() => rmSync(root, { recursive: true, force: true }));

test('the demo ward: deteriorating, silent hypoxia, Scale 2, stopped sending, stable', async () => {
  const data = join(root, 'data');
  const r = await runBevan(['demo', '--data', data, '--patients', '3', '--ward', '10', '--seed', '7'], { timeoutMs: 180_000 });
  assert.equal(r.sanitizer, null, r.stderr);
  assert.equal(r.code, 0, r.stderr);
  const srv = await startServer({ data });
  try {
    const c = client(srv.base);
    const team = await c.get('/CareTeam/demo-ward-1');
    assert.equal(team.status, 200, team.text);
    const plans = (await c.get(`/CarePlan?category=${encodeURIComponent(`${CP_CAT}|virtual-ward`)}&status=active&_sort=_lastUpdated&_count=50`)).json;
    assert.equal(plans.total ?? plans.entry.length, 10);
    const pid = plans.entry.map((e) => e.resource.subject.reference.split('/')[1]);
    // the sentinel: a new enrolled patient's red reading; changes are processed in order, so once
    // its alert exists the demo's readings have all been processed
    const s = await makePatient(c, 'Sentinel');
    await enrol(c, s, 'demo-ward-1');
    assert.equal((await c.post('/Observation', reading.spo2(s, 85, '2026-03-10T20:59:00Z'))).status, 201);
    await until(async () => (await tasks(c, s)).length, 'the sentinel alert', { ms: 120_000 });

    const codes = async (k) => (await tasks(c, pid[k])).map(alertCode).sort();
    // 0: deteriorating slowly -> red SpO2 and a NEWS2 alert
    const d = await codes(0);
    assert.ok(d.includes('spo2-red'), JSON.stringify(d));
    assert.ok(d.some((x) => x.startsWith('news2-')), JSON.stringify(d));
    // 1: silent hypoxia -> red SpO2 while the pulse stays normal
    assert.ok((await codes(1)).includes('spo2-red'), JSON.stringify(await codes(1)));
    // 2: Scale 2 -> NEWS2 Observations carry the Scale 2 SpO2 component
    const n2 = await news2(c, pid[2]);
    assert.ok(n2.length >= 13, `daily NEWS2 for the Scale 2 patient: ${n2.length}`);
    assert.ok(n2.every((o) => o.component.some((x) => x.code.coding[0].code === 'spo2-scale-2')));
    // 3: stopped sending readings (a day or more ago) -> the 20:00 reading is overdue at 21:00+
    await until(async () => (await codes(3)).some((x) => x.startsWith('overdue')), 'the overdue alert of the patient who stopped');
    // stable patients: nothing
    for (const k of [5, 6, 8, 9]) assert.deepEqual(await codes(k), [], `stable patient ${k}`);
    // one NEWS2 per morning sitting (14 days)
    assert.equal((await news2(c, pid[5])).length, 14);
  } finally {
    await srv.stop();
  }
}, { timeout: 300_000 });
