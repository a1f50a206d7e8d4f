// Injected I/O failures (tests/crash/faultfs.c, an LD_PRELOAD shim): while a trigger file exists,
// fsync/fdatasync or write/pwrite on the store's files fail with EIO or ENOSPC. Checks:
//   - the request that hits the failure gets a 5xx OperationOutcome, never a 2xx;
//   - the store is poisoned: every later write is a 5xx even after the fault is gone (never
//     retry-and-acknowledge), and /healthz answers 503;
//   - with 8 concurrent writers, nothing sent after the first failure is acknowledged;
//   - after a restart without the shim, every write acknowledged before the failure reads back
//     byte-identical, and `bevan check` passes.
// Skipped when the shim was not built (BEVAN_FAULTFS unset and build/libfaultfs.so missing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, stopClean, runCheck } from './driver.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const SHIM = process.env.BEVAN_FAULTFS || join(resolve(here, '..', '..'), 'build', 'libfaultfs.so');
const haveShim = existsSync(SHIM);

async function http(method, url, body, headers = {}) {
  const h = { ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/fhir+json';
  const r = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, text, json };
}

const patient = (m) => ({ resourceType: 'Patient', identifier: [{ system: 'urn:bevan:fault', value: m }], name: [{ family: 'Fault', given: [m] }] });
const txBundle = (m) => ({ resourceType: 'Bundle', type: 'transaction', entry: [
  { fullUrl: 'urn:uuid:5a0e0a1c-0000-4000-8000-000000000001', resource: patient(`${m}-p`), request: { method: 'POST', url: 'Patient' } },
  { resource: { resourceType: 'Observation', status: 'final', code: { text: m }, subject: { reference: 'urn:uuid:5a0e0a1c-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
] });

function assert5xxOutcome(r, what) {
  assert.ok(r.status >= 500 && r.status < 600, `${what}: expected a 5xx, got ${r.status}: ${r.text.slice(0, 300)}`);
  assert.equal(r.json?.resourceType, 'OperationOutcome', `${what}: ${r.text.slice(0, 300)}`);
}

async function scenario(t, { ops, errno, kind }) {
  const dir = mkdtempSync(join(tmpdir(), 'bevan-fault-'));
  const data = join(dir, 'db');
  const trigger = join(dir, 'trigger');
  const env = { ...process.env, LD_PRELOAD: SHIM, FAULTFS_TRIGGER: trigger, FAULTFS_OPS: ops, FAULTFS_ERRNO: errno, FAULTFS_MATCH: 'bevan.db' };
  let srv = await serve(data, [], env);
  const acked = new Map(); // "Type/id" -> bytes
  try {
    for (let i = 0; i < 20; i++) {
      const r = await http('POST', `${srv.base}/Patient`, patient(`before-${i}`));
      assert.equal(r.status, 201, r.text.slice(0, 300));
      acked.set(`Patient/${r.json.id}`, r.text);
    }
    const first = [...acked.keys()][0];
    writeFileSync(trigger, '');
    const failing = kind === 'create' ? await http('POST', `${srv.base}/Patient`, patient('during'))
      : kind === 'update' ? await http('PUT', `${srv.base}/${first}`, { ...patient('during'), id: first.split('/')[1] }, { 'If-Match': 'W/"1"' })
        : await http('POST', srv.base, txBundle('during'));
    assert5xxOutcome(failing, `${kind} while ${ops} fails with ${errno}`);
    // The store is poisoned: the answer must not claim that nothing was stored (a commit whose
    // sync failed may survive the restart).
    assert.match(failing.json.issue[0].diagnostics, /not acknowledged/, failing.text);
    const faults = Number(readFileSync(`${trigger}.count`, 'utf8').trim());
    t.diagnostic(`${ops}/${errno}/${kind}: ${faults} injected failures, answer ${failing.status}`);
    rmSync(trigger);
    // The fault is gone, but the store stays poisoned: no retry-and-acknowledge.
    const after = await http('POST', `${srv.base}/Patient`, patient('after'));
    assert5xxOutcome(after, 'a write after the failure');
    const health = await fetch(`${srv.base.replace(/\/fhir$/, '')}/healthz`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(health.status, 503, 'healthz reports the poisoned store');
    srv.child.kill('SIGKILL');
    await new Promise((r) => srv.child.once('exit', r));
    srv = await serve(data); // no shim
    for (const [key, text] of acked) {
      const r = await http('GET', `${srv.base}/${key}/_history/1`);
      assert.equal(r.status, 200, `${key} after restart`);
      assert.equal(r.text, text, `${key} reads back byte-identical`);
    }
    const ok = await http('POST', `${srv.base}/Patient`, patient('restarted'));
    assert.equal(ok.status, 201, 'writes work again after the restart');
    await stopClean(srv);
    srv = null;
    const chk = await runCheck(data);
    assert.equal(chk.code, 0, chk.out);
  } finally {
    if (srv) srv.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

const skip = !haveShim && `faultfs shim not built (${SHIM})`;
test('fdatasync EIO on create: 5xx, poisoned, consistent after restart', { skip }, (t) => scenario(t, { ops: 'fdatasync,fsync', errno: 'EIO', kind: 'create' }));
test('fdatasync EIO on If-Match update: 5xx, poisoned, consistent after restart', { skip }, (t) => scenario(t, { ops: 'fdatasync,fsync', errno: 'EIO', kind: 'update' }));
test('fdatasync EIO on transaction: 5xx, poisoned, consistent after restart', { skip }, (t) => scenario(t, { ops: 'fdatasync,fsync', errno: 'EIO', kind: 'transaction' }));
test('WAL write ENOSPC on create (SQLite fails the COMMIT): 5xx, poisoned, consistent after restart', { skip }, (t) => scenario(t, { ops: 'write,pwrite', errno: 'ENOSPC', kind: 'create' }));
test('WAL write EIO on transaction: 5xx, poisoned, consistent after restart', { skip }, (t) => scenario(t, { ops: 'write,pwrite', errno: 'EIO', kind: 'transaction' }));

test('8 concurrent writers, fdatasync starts failing: nothing sent after the first failure is acknowledged', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bevan-fault-'));
  const data = join(dir, 'db');
  const trigger = join(dir, 'trigger');
  const env = { ...process.env, LD_PRELOAD: SHIM, FAULTFS_TRIGGER: trigger, FAULTFS_OPS: 'fdatasync,fsync', FAULTFS_ERRNO: 'EIO' };
  let srv = await serve(data, [], env);
  const acked = new Map();
  let firstFailureAt = Infinity; // time the first 5xx was received
  const violations = [];
  let n = 0;
  try {
    const stopAt = Date.now() + 1500;
    setTimeout(() => writeFileSync(trigger, ''), 500);
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      while (Date.now() < stopAt) {
        const sentAt = performance.now();
        const r = n++ % 4 === 0 ? await http('POST', srv.base, txBundle(`w${w}-${n}`)) : await http('POST', `${srv.base}/Patient`, patient(`w${w}-${n}`));
        if (r.status === 201) acked.set(`Patient/${r.json.id}`, r.text);
        if (r.status === 200 || r.status === 201) {
          if (sentAt > firstFailureAt) violations.push(`acknowledged ${r.status} for a write sent after the first failure`);
        } else {
          assert5xxOutcome(r, 'a write during the fault');
          firstFailureAt = Math.min(firstFailureAt, performance.now());
        }
      }
    }));
    assert.ok(firstFailureAt < Infinity, 'the fault was hit');
    assert.deepEqual(violations, []);
    t.diagnostic(`${acked.size} creates acknowledged before the fault`);
    srv.child.kill('SIGKILL');
    await new Promise((r) => srv.child.once('exit', r));
    srv = await serve(data);
    for (const [key, text] of acked) {
      const r = await http('GET', `${srv.base}/${key}/_history/1`);
      assert.equal(r.text, text, `${key} reads back byte-identical`);
    }
    await stopClean(srv);
    srv = null;
    const chk = await runCheck(data);
    assert.equal(chk.code, 0, chk.out);
  } finally {
    if (srv) srv.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
