// `bevan demo`: deterministic for a seed, valid NHS numbers, and servable/searchable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, client, runBevan, tempDir, nhsNumberValid, NHS_SYSTEM } from './lib/server.mjs';

let root;
before(() => { root = tempDir('bevan-demo-'); });
after(() => { if (root) rmSync(root, { recursive: true, force: true }); });

function parseCounts(stdout) {
  const counts = {};
  for (const m of stdout.matchAll(/^\s+([A-Za-z]+)\s+(\d+)\s*$/gm)) counts[m[1]] = Number(m[2]);
  return counts;
}

async function demo(dir, patients, seed) {
  const r = await runBevan(['demo', '--data', dir, '--patients', String(patients), '--seed', String(seed)], { timeoutMs: 180_000 });
  assert.equal(r.sanitizer, null, r.stderr);
  assert.equal(r.code, 0, `demo: ${r.stdout}\n${r.stderr.slice(-3000)}`);
  const chk = await runBevan(['check', '--data', dir]);
  assert.equal(chk.sanitizer, null, chk.stderr);
  assert.equal(chk.code, 0, `check: ${chk.stdout}\n${chk.stderr}`);
  assert.match(chk.stdout, /check ok/);
  return parseCounts(chk.stdout);
}

/** Serve dir, return all Patients' NHS numbers (sorted) and run fn(client). */
async function withServer(dir, fn) {
  const srv = await startServer({ data: dir });
  try {
    return await fn(client(srv.base));
  } finally {
    await srv.stop();
    srv.kill();
  }
}

const nhsNumbers = async (c) => {
  const { entries } = await c.allPages('/Patient?_count=100');
  return entries.map((e) => (e.resource.identifier || []).find((i) => i.system === NHS_SYSTEM)?.value).sort();
};

test('the same seed gives the same population in two folders; NHS numbers valid; searchable', async () => {
  const a = join(root, 'a');
  const b = join(root, 'b');
  const ca = await demo(a, 20, 7);
  const cb = await demo(b, 20, 7);
  assert.deepEqual(ca, cb, 'same counts per type');
  assert.equal(ca.Patient, 20, JSON.stringify(ca));
  for (const t of ['Organization', 'Practitioner', 'Condition', 'Observation']) assert.ok(ca[t] > 0, `${t} generated: ${JSON.stringify(ca)}`);
  assert.ok(ca.MedicationRequest > 0 || ca.MedicationStatement > 0, `medications generated: ${JSON.stringify(ca)}`);

  const na = await withServer(a, async (c) => {
    const nums = await nhsNumbers(c);
    assert.equal(nums.length, 20);
    for (const n of nums) assert.ok(n && nhsNumberValid(n), `NHS number ${n} is valid (Modulus 11)`);
    assert.equal(new Set(nums).size, 20, 'every patient has their own NHS number');
    // search works on the demo data
    const one = await c.get(`/Patient?identifier=${encodeURIComponent(`${NHS_SYSTEM}|${nums[0]}`)}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.total, 1);
    const pid = one.json.entry[0].resource.id;
    const conds = await c.get(`/Condition?subject=Patient/${pid}&_summary=count`);
    const obs = await c.get(`/Observation?subject=Patient/${pid}&_summary=count`);
    assert.equal(conds.status, 200);
    assert.equal(obs.status, 200);
    assert.ok(conds.json.total + obs.json.total > 0, 'the patient has a record');
    // references between demo resources resolve
    const gp = one.json.entry[0].resource.generalPractitioner?.[0]?.reference;
    if (gp) assert.equal((await c.get(`/${gp}`)).status, 200, `${gp} resolves`);
    assert.equal(await c.count('/Patient'), 20);
    // the demo data is valid by the server's own rules
    const v = await c.post('/Patient/$validate', { ...one.json.entry[0].resource, id: undefined, meta: undefined });
    assert.equal(v.status, 200, v.text);
    return nums;
  });
  const nb = await withServer(b, nhsNumbers);
  assert.deepEqual(na, nb, 'the same NHS numbers');

  const c8 = join(root, 'c');
  await demo(c8, 20, 8);
  const n8 = await withServer(c8, nhsNumbers);
  assert.notDeepEqual(n8, na, 'a different seed gives a different population');
});

test('serve --demo seeds an empty store on first start only', async () => {
  const d = join(root, 'served');
  const srv = await startServer({ data: d, args: ['--demo', '5', '--seed', '3'] });
  let first;
  try {
    first = await client(srv.base).count('/Patient');
    assert.equal(first, 5);
  } finally { await srv.stop(); srv.kill(); }
  const again = await startServer({ data: d, args: ['--demo', '5', '--seed', '3'] });
  try {
    assert.equal(await client(again.base).count('/Patient'), 5, 'not seeded twice');
  } finally { await again.stop(); again.kill(); }
});

test('demo --help and bad options', async () => {
  const h = await runBevan(['demo', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /usage: bevan demo/);
  const bad = await runBevan(['demo', '--data', join(root, 'x'), '--patients', 'many']);
  assert.notEqual(bad.code, 0);
});
