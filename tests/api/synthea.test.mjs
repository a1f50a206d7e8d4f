// The 17 Synthea sample transaction Bundles (plus their hospital and practitioner bundles) from
// ../shared/data/synthea-r4: loaded over HTTP and with `bevan import`; exact counts, no urn:uuid
// left in any reference, every local reference resolvable, repeated Organizations/Practitioners
// kept apart. Skipped (with a message) when ../shared/data is absent, as on a user's machine.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, client, runBevan, tempDir, pool, SYNTHEA_DIR } from './lib/server.mjs';

const EXPECTED = {
  Observation: 1504, Claim: 303, Encounter: 254, ExplanationOfBenefit: 254, Immunization: 238, Organization: 125,
  Practitioner: 125, Procedure: 92, DiagnosticReport: 81, Condition: 75, MedicationRequest: 49, CarePlan: 23,
  Patient: 17, Goal: 13, ImagingStudy: 7,
};
const TOTAL = 3160;
const present = existsSync(SYNTHEA_DIR);
const skip = present ? false : `../shared/data/synthea-r4 is absent (${SYNTHEA_DIR}): sample-bundle tests skipped`;
if (!present) console.log(`# SKIP: ${skip}`);

function files() {
  const all = readdirSync(SYNTHEA_DIR).filter((f) => f.endsWith('.json')).sort();
  const shared = all.filter((f) => /^(hospital|practitioner)Information/.test(f));
  const patients = all.filter((f) => !shared.includes(f));
  return { shared, patients, all };
}

/** Organizations/Practitioners that occur more than once across the bundles, by identifier. */
function repeats() {
  const m = new Map();
  for (const f of files().all) {
    for (const e of JSON.parse(readFileSync(join(SYNTHEA_DIR, f), 'utf8')).entry) {
      const r = e.resource;
      if (r.resourceType !== 'Organization' && r.resourceType !== 'Practitioner') continue;
      const idf = r.identifier[0];
      const k = `${r.resourceType}?identifier=${encodeURIComponent(`${idf.system}|${idf.value}`)}`;
      m.set(k, (m.get(k) || 0) + 1);
    }
  }
  return [...m].filter(([, n]) => n > 1);
}

function walkRefs(v, out) {
  if (Array.isArray(v)) { for (const x of v) walkRefs(x, out); return; }
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === 'reference' && typeof x === 'string') out.push(x);
      else walkRefs(x, out);
    }
  }
}

describe('sample bundles over HTTP', { skip }, () => {
  let srv;
  let c;
  before(async () => { srv = await startServer(); c = client(srv.base); });
  after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

  test('all 19 transaction bundles are accepted (hospital and practitioner first, then 2 at a time)', async () => {
    const { shared, patients } = files();
    assert.equal(patients.length, 17);
    assert.equal(shared.length, 2);
    const post = async (f) => {
      const body = readFileSync(join(SYNTHEA_DIR, f));
      const n = JSON.parse(body).entry.length;
      const r = await c.post('', body, { timeoutMs: 120_000 });
      assert.equal(r.status, 200, `${f}: ${r.text.slice(0, 800)}`);
      assert.equal(r.json.type, 'transaction-response');
      assert.equal(r.json.entry.length, n, f);
      assert.ok(r.json.entry.every((e) => e.response.status.startsWith('201')), `${f}: every entry created`);
      return n;
    };
    let stored = 0;
    for (const f of shared) stored += await post(f);
    for (const n of await pool(patients, 2, post)) stored += n;
    assert.equal(stored, TOTAL);
  });

  test('counts per type are exactly those of ../shared/data/README.md', async () => {
    const got = {};
    for (const t of Object.keys(EXPECTED)) got[t] = await c.count(`/${t}`);
    assert.deepEqual(got, EXPECTED);
    const all = await c.get('/?_summary=count');
    assert.equal(all.status, 200, all.text);
    assert.equal(all.json.total, TOTAL);
    assert.equal(await c.historyTotal(), TOTAL, 'one version per resource');
  });

  test('no stored reference is a urn:uuid, and every local reference resolves to a stored resource', async () => {
    const keys = new Set();
    const refs = [];
    let n = 0;
    for (const t of Object.keys(EXPECTED)) {
      const { entries } = await c.allPages(`/${t}?_count=500`);
      assert.equal(entries.length, EXPECTED[t], `${t}: paging returns every resource`);
      for (const e of entries) {
        const r = e.resource;
        n++;
        keys.add(`${r.resourceType}/${r.id}`);
        const mine = [];
        walkRefs(r, mine);
        for (const ref of mine) {
          assert.ok(!ref.startsWith('urn:uuid:'), `${r.resourceType}/${r.id} still has ${ref}`);
          refs.push([`${r.resourceType}/${r.id}`, ref]);
        }
        assert.ok(!JSON.stringify(r).includes('urn:uuid:'), `${r.resourceType}/${r.id} mentions urn:uuid:`);
      }
    }
    assert.equal(n, TOTAL);
    assert.ok(refs.length > 9000, `${refs.length} references checked`);
    for (const [from, ref] of refs) {
      if (ref.startsWith('#')) continue; // contained resources
      assert.match(ref, /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/, `${from}: ${ref} is a local reference`);
      assert.ok(keys.has(ref), `${from}: ${ref} resolves`);
    }
  });

  test('repeated Organizations and Practitioners are separate resources, not merged', async () => {
    const reps = repeats();
    assert.ok(reps.length >= 20, `${reps.length} repeated identifiers`);
    for (const [query, times] of reps) {
      const r = await c.get(`/${query}`);
      assert.equal(r.status, 200);
      assert.equal(r.json.total, times, `${query} stored ${times} times`);
      assert.equal(new Set(r.json.entry.map((e) => e.resource.id)).size, times, 'distinct server ids');
    }
  });

  test('a second load of a patient bundle adds new resources (POST is never a merge)', async () => {
    const f = files().patients[0];
    const body = readFileSync(join(SYNTHEA_DIR, f));
    const n = JSON.parse(body).entry.length;
    const r = await c.post('', body, { timeoutMs: 120_000 });
    assert.equal(r.status, 200);
    assert.equal(await c.count('/Patient'), 18);
    const all = await c.get('/?_summary=count');
    assert.equal(all.json.total, TOTAL + n);
  });
});

describe('sample bundles with bevan import, then bevan check', { skip }, () => {
  let dir;
  before(() => { dir = tempDir('bevan-import-'); });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  test('bevan import of the folder stores 3,160 resources; bevan check exits 0 with the same counts', async () => {
    // the README's form: the folder itself (files are taken in name order)
    const args = ['import', '--data', dir, SYNTHEA_DIR];
    const imp = await runBevan(args, { timeoutMs: 180_000 });
    assert.equal(imp.sanitizer, null, imp.stderr);
    assert.equal(imp.code, 0, `import: ${imp.stdout}\n${imp.stderr.slice(-3000)}`);
    assert.match(imp.stdout, /imported 19 files \(0 failed\): 3160 resources stored, 0 entries failed/);
    const chk = await runBevan(['check', '--data', dir]);
    assert.equal(chk.sanitizer, null, chk.stderr);
    assert.equal(chk.code, 0, `check: ${chk.stdout}\n${chk.stderr}`);
    assert.match(chk.stdout, /check ok/);
    const counts = {};
    for (const m of chk.stdout.matchAll(/^\s+([A-Za-z]+)\s+(\d+)\s*$/gm)) counts[m[1]] = Number(m[2]);
    assert.deepEqual(counts, EXPECTED);
    // and the server sees the same data
    const srv = await startServer({ data: dir });
    try {
      const c = client(srv.base);
      for (const t of ['Patient', 'Observation', 'Organization']) assert.equal(await c.count(`/${t}`), EXPECTED[t]);
      const { entries } = await c.allPages('/Encounter?_count=1000');
      assert.ok(entries.every((e) => !JSON.stringify(e.resource).includes('urn:uuid:')));
    } finally {
      await srv.stop();
      srv.kill();
    }
  });

  test('bevan import of a failing bundle exits non-zero and stores nothing of it', async () => {
    const d2 = tempDir('bevan-import-bad-');
    try {
      const bad = join(d2, 'bad.json');
      const b = JSON.parse(readFileSync(join(SYNTHEA_DIR, files().patients[0]), 'utf8'));
      const enc = b.entry.filter((e) => e.resource.resourceType === 'Encounter').at(-1);
      enc.resource.status = 'not-a-status';
      writeFileSync(bad, JSON.stringify(b));
      const data = join(d2, 'data');
      const imp = await runBevan(['import', '--data', data, bad]);
      assert.equal(imp.sanitizer, null, imp.stderr);
      assert.notEqual(imp.code, 0, 'a failed import exits non-zero');
      const chk = await runBevan(['check', '--data', data]);
      assert.equal(chk.code, 0, chk.stdout + chk.stderr);
      assert.ok(!/^\s+[A-Za-z]+\s+[1-9]/m.test(chk.stdout), `nothing stored: ${chk.stdout}`);
    } finally {
      rmSync(d2, { recursive: true, force: true });
    }
  });
});
