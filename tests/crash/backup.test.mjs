// Hot backup: `bevan backup --data DIR OUT` while 8 writers keep creating and updating; the copy,
// restored into a new folder, passes `bevan check` and holds every write acknowledged before the
// backup began, byte-identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, copyFileSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve, stopClean, runCheck } from './driver.mjs';

const BIN = process.env.BEVAN_BIN || new URL('../../build/bevan', import.meta.url).pathname;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(args) {
  return new Promise((res, rej) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`bevan ${args[0]} timed out`)); }, 300_000);
    child.on('exit', (code) => { clearTimeout(t); res({ code, out }); });
  });
}

test('bevan backup while writes continue: the restored copy holds every write acknowledged before it began', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bevan-backup-'));
  const data = join(dir, 'live');
  let srv = await serve(data);
  try {
    const acked = new Map(); // "Type/id/_history/v" -> bytes
    let stop = false;
    let n = 0;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      const mine = [];
      while (!stop) {
        const i = n++;
        if (mine.length && i % 3 === 0) {
          const m = mine[i % mine.length];
          const r = await fetch(`${srv.base}/Patient/${m.id}`, { method: 'PUT', headers: { 'Content-Type': 'application/fhir+json', 'If-Match': `W/"${m.v}"` },
            body: JSON.stringify({ resourceType: 'Patient', id: m.id, name: [{ family: 'Backup', given: [`u${i}`] }] }), signal: AbortSignal.timeout(30_000) });
          const text = await r.text();
          assert.equal(r.status, 200, text.slice(0, 300));
          m.v++;
          acked.set(`Patient/${m.id}/_history/${m.v}`, text);
        } else {
          const r = await fetch(`${srv.base}/Patient`, { method: 'POST', headers: { 'Content-Type': 'application/fhir+json' },
            body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Backup', given: [`w${w}-${i}`] }] }), signal: AbortSignal.timeout(30_000) });
          const text = await r.text();
          assert.equal(r.status, 201, text.slice(0, 300));
          const j = JSON.parse(text);
          mine.push({ id: j.id, v: 1 });
          acked.set(`Patient/${j.id}/_history/1`, text);
        }
      }
    });
    // Writes flowing: at least 0.8 s and 10 acknowledged versions (bounded: a loaded machine is slow).
    await sleep(800);
    for (let i = 0; i < 600 && acked.size < 10; i++) await sleep(50);
    const before = new Map(acked);
    const out = join(dir, 'copy.db');
    const b = await run(['backup', '--data', data, out]);
    const during = acked.size - before.size;
    await sleep(200);
    stop = true;
    await Promise.all(writers);
    assert.equal(b.code, 0, b.out);
    t.diagnostic(`${b.out.trim()}; ${before.size} versions acknowledged before the backup, ${during} while it ran, ${acked.size} in all`);
    assert.ok(before.size > 0);
    await stopClean(srv);
    srv = null;

    const restored = join(dir, 'restored');
    mkdirSync(restored);
    copyFileSync(out, join(restored, 'bevan.db'));
    assert.ok(!existsSync(`${out}.tmp`), 'no temporary file left behind');
    const chk = await runCheck(restored);
    assert.equal(chk.code, 0, chk.out);
    srv = await serve(restored);
    const missing = [];
    for (const [key, text] of before) {
      const r = await fetch(`${srv.base}/${key}`, { signal: AbortSignal.timeout(30_000) });
      const got = await r.text();
      if (r.status !== 200 || got !== text) missing.push(`${key}: ${r.status}`);
    }
    assert.deepEqual(missing, [], 'every write acknowledged before the backup began is in the copy, byte-identical');
    await stopClean(srv);
    srv = null;
  } finally {
    if (srv) srv.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bevan backup: usage errors', async () => {
  assert.equal((await run(['backup', '--data', '/nonexistent-bevan-dir', '/tmp/x.db'])).code, 1);
  assert.equal((await run(['backup', '--data', '/tmp'])).code, 2);
  assert.equal((await run(['backup', '--help'])).code, 0);
});
