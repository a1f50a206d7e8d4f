// `bevan reindex`: rebuilds every index row from the stored JSON. A reindex that changes nothing
// keeps every search result; after index rows are removed or corrupted (with the sqlite3 shell),
// searches go wrong and a reindex restores them; `bevan check` passes afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startServer, client, runBevan, tempDir } from './lib/server.mjs';

let root;
let data;
before(async () => {
  root = tempDir('bevan-reindex-');
  data = join(root, 'data');
  const r = await runBevan(['demo', '--data', data, '--patients', '25', '--seed', '3'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr.slice(-2000));
});
after(() => { if (root) rmSync(root, { recursive: true, force: true }); });

const QUERIES = [
  'Patient?family=s',
  'Patient?gender=female&birthdate=ge1970',
  'Observation?code=http://loinc.org|8867-4',
  'Observation?date=ge2025-01-01&category=vital-signs',
  'Observation?value-quantity=gt100',
  'Condition?code=http://snomed.info/sct|38341003',
  'Encounter?date=2024',
  'MedicationRequest?status=active',
  'Practitioner?identifier=https://fhir.hl7.org.uk/Id/gmc-number|',
  'Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|',
  'Location?organization=Organization/demo-org-1',
  'AllergyIntolerance?clinical-status=active',
];

/** Sorted ids per query, walking all pages. */
async function results() {
  const srv = await startServer({ data });
  try {
    const c = client(srv.base);
    const out = {};
    for (const q of QUERIES) {
      const { entries } = await c.allPages(`${q}${q.includes('?') ? '&' : '?'}_count=200`);
      out[q] = entries.map((e) => e.resource.id).sort();
    }
    // the subject of an observation finds it
    const obs = (await c.get('/Observation?_count=1')).json.entry[0].resource;
    const bySubj = await c.allPages(`/Observation?subject=${obs.subject.reference}&_count=200`);
    out.subject = bySubj.entries.map((e) => e.resource.id).sort();
    out.subjectHas = out.subject.includes(obs.id);
    return out;
  } finally {
    await srv.stop();
    srv.kill();
  }
}

async function reindex() {
  const r = await runBevan(['reindex', '--data', data], { timeoutMs: 120_000 });
  assert.equal(r.sanitizer, null, r.stderr);
  assert.equal(r.code, 0, `reindex: ${r.stdout}\n${r.stderr.slice(-2000)}`);
  const m = r.stdout.match(/reindexed (\d+) resources \((\d+) index rows\).*; 0 could not be indexed/);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) > 1000 && Number(m[2]) > Number(m[1]), r.stdout);
  const chk = await runBevan(['check', '--data', data]);
  assert.equal(chk.code, 0, `check after reindex: ${chk.stdout}${chk.stderr}`);
  assert.match(chk.stdout, /check ok/);
  return Number(m[1]);
}

let baseline;

test('a reindex that changes nothing keeps every search result', async () => {
  baseline = await results();
  for (const q of QUERIES) assert.ok(baseline[q].length > 0, `${q} finds something in the demo population`);
  assert.ok(baseline.subjectHas);
  await reindex();
  assert.deepEqual(await results(), baseline);
});

const haveSqlite = spawnSync('sqlite3', ['-version']).status === 0;

test('removed and corrupted index rows are restored by reindex', { skip: haveSqlite ? false : 'skipped: the sqlite3 shell is not installed' }, async () => {
  assert.ok(baseline, 'the first test ran');
  const db = join(data, 'bevan.db');
  const sql = [
    'DELETE FROM ix_token;',
    "UPDATE ix_string SET norm = 'zzz';",
    'DELETE FROM ix_date WHERE rid % 2 = 0;',
    'DELETE FROM ix_reference;',
    'UPDATE ix_quantity SET num = -1, num_lo = -1, num_hi = -1;',
  ].join('\n');
  const r = spawnSync('sqlite3', [db], { input: sql, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const broken = await results();
  for (const q of QUERIES) assert.notDeepEqual(broken[q], baseline[q], `${q} is affected by the corruption`);
  assert.equal(broken.subjectHas, false);
  const n = await reindex();
  assert.ok(n > 1000);
  assert.deepEqual(await results(), baseline);
});

test('reindex of a folder that does not exist fails cleanly', async () => {
  const r = await runBevan(['reindex', '--data', join(root, 'nope')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /does not exist/);
});
