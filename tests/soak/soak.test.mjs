// Soak, CI form (label soak): 2 minutes of mixed traffic (reads, searches, creates, If-Match
// updates, transactions) at a steady 50 requests/s (SOAK_SECONDS, SOAK_RATE override). Asserts: no
// 5xx and no transport error; open descriptors other than client sockets flat after warm-up. RSS
// growth and p50/p99 per interaction are reported as diagnostics (in 2 minutes SQLite's page
// caches are still filling as the database grows, so RSS is judged by bench/soak/run.sh's
// 30-minute run, not here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { soak, report } from '../../bench/soak/soak.mjs';

test('soak: steady mixed traffic, no 5xx, descriptors flat', async (t) => {
  const s = await soak({ seconds: Number(process.env.SOAK_SECONDS || 120), rate: Number(process.env.SOAK_RATE || 50), log: (l) => t.diagnostic(l) });
  for (const l of report(s).split('\n')) t.diagnostic(l);
  assert.deepEqual(s.bad.slice(0, 20), [], 'no 5xx or transport errors');
  assert.ok(s.fdsEnd <= Math.ceil(s.fdsAfterWarmup * 1.05), `descriptors grew: ${s.fdsAfterWarmup} -> ${s.fdsEnd}`);
  assert.ok(s.requests > 0);
});
