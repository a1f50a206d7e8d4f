// Crash safety (CI form): 5 rounds of 8 writers, SIGKILL at a random moment in each, restart, verify
// that every acknowledged write reads back byte-identical (read and vread), that transactions are all
// or nothing, and that `bevan check` passes. The long form is bench/crash.sh (50 x 32).
// Restart time is reported (test diagnostic), never asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crashRounds } from './driver.mjs';

test('SIGKILL during concurrent writes loses no acknowledged write (5 rounds x 8 writers)', async (t) => {
  const s = await crashRounds({ rounds: Number(process.env.CRASH_ROUNDS || 5), writers: Number(process.env.CRASH_WRITERS || 8),
    log: (l) => t.diagnostic(l) });
  t.diagnostic(`acknowledged writes: ${s.acked}; restart ms: ${s.restartMs.join(', ')}; killed after ms: ${s.killedAfterMs.join(', ')}`);
  assert.deepEqual(s.problems, [], `crash rounds found problems (data kept in ${s.data})`);
  assert.ok(s.acked > 0, 'some writes were acknowledged before the kills');
  assert.equal(s.check.code, 0, s.check.out);
});
