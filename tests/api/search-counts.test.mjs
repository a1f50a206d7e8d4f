// Kept token counts (ix_token_count, schema 3): the total of a search that is exactly one
// "param=system|code" is read from a count the writer keeps beside the index rows. Every write
// path must keep it exact: create, update (the code changes), delete, re-create after a delete,
// a resource with the same code twice, a failed transaction (rolled back), a successful one, two
// resource types sharing the parameter, and `bevan reindex`. Each total is compared with the
// number of matches read page by page and with a count that does not use the kept count (an OR
// of the code with a code that matches nothing); `bevan check` recounts the table at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, client, runBevan, tempDir } from './lib/server.mjs';

const SYS = 'http://example.org/count-test';
let root;
let data;
let srv;
let c;
before(async () => {
  root = tempDir('bevan-counts-');
  data = join(root, 'data');
  srv = await startServer({ data, keepData: true });
  c = client(srv.base);
});
after(async () => {
  if (srv) { await srv.stop(); srv.kill(); }
  if (root) rmSync(root, { recursive: true, force: true });
});

const cc = (...codes) => ({ coding: codes.map((code) => ({ system: SYS, code })) });
const obs = (code, extra = {}) => ({ resourceType: 'Observation', status: 'final', code, ...extra });
const cond = (code) => ({ resourceType: 'Condition', subject: { reference: 'Patient/nobody' }, code });

/** The kept total, and the same search counted two other ways; all three must agree. */
async function totals(type, code) {
  const v = encodeURIComponent(`${SYS}|${code}`);
  const kept = await c.get(`/${type}?code=${v}&_total=accurate&_count=1`);
  assert.equal(kept.status, 200, kept.text.slice(0, 300));
  const summary = await c.count(`/${type}?code=${v}`);
  const scanned = await c.count(`/${type}?code=${v},${encodeURIComponent(`${SYS}|no-such-code`)}`);
  const { entries } = await c.allPages(`/${type}?code=${v}&_count=50`);
  return { kept: kept.json.total, summary, scanned, paged: entries.length };
}

async function expectCount(type, code, n) {
  const t = await totals(type, code);
  assert.deepEqual(t, { kept: n, summary: n, scanned: n, paged: n }, `${type} code=${code}`);
}

test('kept counts follow creates, updates, deletes, duplicates, transactions and reindex', { timeout: 300_000 }, async () => {
  const ids = [];
  for (let i = 0; i < 6; i++) ids.push((await c.post('/Observation', obs(cc('A')))).json.id);
  await expectCount('Observation', 'A', 6);
  // the same code twice in one resource counts once; another code beside it counts for that code
  const dup = (await c.post('/Observation', obs(cc('A', 'A', 'B')))).json.id;
  await expectCount('Observation', 'A', 7);
  await expectCount('Observation', 'B', 1);
  // another type with the same parameter and code is counted apart
  for (let i = 0; i < 3; i++) assert.equal((await c.post('/Condition', cond(cc('A')))).status, 201);
  await expectCount('Observation', 'A', 7);
  await expectCount('Condition', 'A', 3);
  // update: the code changes from A to B
  const o0 = (await c.get(`/Observation/${ids[0]}`)).json;
  o0.code = cc('B');
  assert.equal((await c.put(`/Observation/${ids[0]}`, o0)).status, 200);
  await expectCount('Observation', 'A', 6);
  await expectCount('Observation', 'B', 2);
  // update without a change of code
  const o1 = (await c.get(`/Observation/${ids[1]}`)).json;
  o1.status = 'amended';
  assert.equal((await c.put(`/Observation/${ids[1]}`, o1)).status, 200);
  await expectCount('Observation', 'A', 6);
  // the duplicate's copies go together
  const d = (await c.get(`/Observation/${dup}`)).json;
  d.code = cc('B', 'B');
  assert.equal((await c.put(`/Observation/${dup}`, d)).status, 200);
  await expectCount('Observation', 'A', 5);
  await expectCount('Observation', 'B', 2);
  // delete, and create again under the same id
  assert.equal((await c.del(`/Observation/${ids[2]}`)).status, 204);
  await expectCount('Observation', 'A', 4);
  assert.equal((await c.del(`/Observation/${ids[2]}`)).status, 204); // deleting again changes nothing
  await expectCount('Observation', 'A', 4);
  const again = (await c.put(`/Observation/${ids[2]}`, { ...obs(cc('A')), id: ids[2] }));
  assert.ok([200, 201].includes(again.status), again.text.slice(0, 300));
  await expectCount('Observation', 'A', 5);
  // a transaction that fails is rolled back whole, counts too
  const bad = {
    resourceType: 'Bundle', type: 'transaction', entry: [
      { request: { method: 'POST', url: 'Observation' }, resource: obs(cc('A')) },
      { request: { method: 'DELETE', url: `Observation/${ids[3]}` } },
      { request: { method: 'PUT', url: `Observation/${ids[4]}` }, resource: { ...obs(cc('C')), id: ids[4] } },
      { request: { method: 'PUT', url: `Observation/${ids[5]}`, ifMatch: 'W/"99"' }, resource: { ...obs(cc('C')), id: ids[5] } },
    ],
  };
  const r = await c.post('/', bad);
  assert.ok(r.status >= 400, `the transaction should fail: ${r.status} ${r.text.slice(0, 300)}`);
  await expectCount('Observation', 'A', 5);
  await expectCount('Observation', 'C', 0);
  // the same transaction without the failing entry commits
  bad.entry.pop();
  const ok = await c.post('/', bad);
  assert.equal(ok.status, 200, ok.text.slice(0, 300));
  await expectCount('Observation', 'A', 4); // +1 created, -1 deleted, -1 changed to C
  await expectCount('Observation', 'C', 1);
  await expectCount('Condition', 'A', 3);
  // many resources with one code in a transaction: the writer sums their count changes and
  // applies them once, and a GET entry (processed after the writes) already sees them in its total
  const many = { resourceType: 'Bundle', type: 'transaction', entry: [
    ...Array.from({ length: 12 }, () => ({ resource: obs(cc('D', 'D')), request: { method: 'POST', url: 'Observation' } })),
    { request: { method: 'GET', url: `Observation?code=${encodeURIComponent(`${SYS}|D`)}&_total=accurate&_count=1` } },
  ] };
  const m = await c.post('/', many);
  assert.equal(m.status, 200, m.text.slice(0, 300));
  assert.equal(m.json.entry[12].resource.total, 12, 'the GET entry counts the transaction\'s creates');
  await expectCount('Observation', 'D', 12);

  await srv.stop();
  srv.kill();
  srv = null;
  const chk = await runBevan(['check', '--data', data]);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
  // reindex keeps them, and so does a second server start
  const re = await runBevan(['reindex', '--data', data]);
  assert.equal(re.code, 0, re.stdout + re.stderr);
  const chk2 = await runBevan(['check', '--data', data]);
  assert.equal(chk2.code, 0, chk2.stdout + chk2.stderr);
  srv = await startServer({ data, keepData: true });
  c = client(srv.base);
  await expectCount('Observation', 'A', 4);
  await expectCount('Observation', 'B', 2);
  await expectCount('Condition', 'A', 3);
});
