// Virtual wards: overdue readings driven by the TEST-ONLY clock (BEVAN_TEST_NOW_FILE), the timer's
// state surviving restarts, and a reading clearing the overdue alert (docs/ward.md).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, client, tempDir, runBevan } from './lib/server.mjs';
import { until, makeWard, makePatient, enrol, reading, tasks, alertCode } from './lib/ward.mjs';

const root = tempDir('bevan-ward-overdue-');
const clock = join(root, 'now');
process.env.BEVAN_TEST_NOW_FILE = clock;
process.env.BEVAN_WARD_TICK_MS = '100';
const setNow = (iso) => { writeFileSync(`${clock}.tmp`, `${iso}\n`); renameSync(`${clock}.tmp`, clock); };
after(() => rmSync(root, { recursive: true, force: true }));

test('a missed reading raises "overdue", escalates after the second window, survives restarts, and a reading clears it', async () => {
  const data = join(root, 'data');
  // enrolled 07:00; readings due 08:00, 14:00, 20:00 (server zone UTC)
  setNow('2026-03-02T07:30:00Z');
  let srv = await startServer({ data });
  let c = client(srv.base);
  let p;
  let q;
  try {
    const ward = await makeWard(c);
    p = await makePatient(c, 'Missed');
    q = await makePatient(c, 'Punctual');
    await enrol(c, p, ward, { start: '2026-03-02T07:00:00Z' });
    await enrol(c, q, ward, { start: '2026-03-02T07:00:00Z' });
    // q sends the 08:00 reading on time (a little early counts too)
    assert.equal((await c.post('/Observation', reading.spo2(q, 97, '2026-03-02T07:50:00Z'))).status, 201);
    // 09:30: overdue
    setNow('2026-03-02T09:30:00Z');
    const [t] = await until(async () => { const x = await tasks(c, p); return x.length ? x : null; }, 'the overdue Task');
    assert.equal(alertCode(t), 'overdue');
    assert.equal(t.priority, 'routine');
    assert.match(t.description, /2026-03-02T08:00:00/);
    assert.equal(new Date(t.authoredOn).toISOString(), '2026-03-02T09:30:00.000Z', 'the ward clock stamps the alert');
    // the punctual patient has nothing
    assert.equal((await tasks(c, q)).length, 0);
    // still one alert on later ticks
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await tasks(c, p)).length, 1);
  } finally {
    await srv.stop();
  }

  // restart later: 12:30 is more than 4 h after 08:00 -> escalated (the state came from the store)
  setNow('2026-03-02T12:30:00Z');
  srv = await startServer({ data });
  c = client(srv.base);
  try {
    const t = await until(async () => {
      const x = await tasks(c, p);
      return x.length === 1 && alertCode(x[0]) === 'overdue-escalated' ? x[0] : null;
    }, 'the escalated overdue Task');
    assert.equal(t.priority, 'urgent');
    assert.equal(t.status, 'requested');
    assert.ok(t.note.some((n) => /Escalated from overdue to overdue-escalated/.test(n.text)));
    assert.equal((await tasks(c, q)).length, 0, 'q sent the 08:00 reading; 14:00 is not due yet');

    // a reading clears the overdue alert: Task completed, Flag inactive
    assert.equal((await c.post('/Observation', reading.spo2(p, 96, '2026-03-02T12:31:00Z'))).status, 201);
    const done = await until(async () => {
      const x = (await c.get(`/Task/${t.id}`)).json;
      return x.status === 'completed' ? x : null;
    }, 'the overdue Task completed by the reading');
    assert.ok(done.note.some((n) => /Reading received/.test(n.text)));
    assert.equal((await c.get(`/${done.focus.reference}`)).json.status, 'inactive');

    // 15:30: both missed 14:00 -> a new overdue alert each
    setNow('2026-03-02T15:30:00Z');
    await until(async () => (await tasks(c, q)).some((x) => alertCode(x) === 'overdue' && x.status === 'requested'), 'q overdue at 14:00');
    await until(async () => (await tasks(c, p)).some((x) => alertCode(x) === 'overdue' && x.status === 'requested'), 'p overdue at 14:00');
    // a clinician closes p's alert: it is not raised again for the same slot, even across a restart
    const open = (await tasks(c, p)).find((x) => x.status === 'requested');
    const closed = await c.put(`/Task/${open.id}`, { ...open, meta: undefined, status: 'cancelled', note: [{ text: 'Phoned: oximeter broken' }] });
    assert.equal(closed.status, 200, closed.text);
    await until(async () => (await c.get(`/${open.focus.reference}`)).json.status === 'inactive', 'Flag inactive');
  } finally {
    await srv.stop();
  }
  srv = await startServer({ data });
  c = client(srv.base);
  try {
    // the sentinel: q's alert escalates at 18:30; by then p has been checked too
    setNow('2026-03-02T18:30:00Z');
    await until(async () => (await tasks(c, q)).some((x) => alertCode(x) === 'overdue-escalated'), 'q escalated');
    const px = await tasks(c, p);
    assert.equal(px.length, 2, JSON.stringify(px.map((x) => [alertCode(x), x.status])));
    assert.ok(px.every((x) => x.status !== 'requested'), 'the closed alert stays closed for the slot it was about');
  } finally {
    await srv.stop();
  }
  const chk = await runBevan(['check', '--data', data]);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
}, { timeout: 120_000 });
