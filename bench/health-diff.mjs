// The durable-write figures of a load run, from two readings of GET /healthz (before, after):
//   node bench/health-diff.mjs BEFORE.json AFTER.json
// prints one line: writes, groups, mean group size, syncs and their mean, p50 and p99 in µs. The
// percentiles are bucket limits (at most about 25 % above the true value; docs/operations.md, "Health").
import { readFileSync } from 'node:fs';

const [before, after] = process.argv.slice(2, 4).map((f) => JSON.parse(readFileSync(f, 'utf8')).durability);
if (!before || !after) {
  console.log('no durability figures in /healthz');
  process.exit(0);
}
const counts = (d) => new Map(d.syncHistogramUs.map(([limit, n]) => [limit ?? Infinity, n]));
const b = counts(before);
const hist = [...counts(after)].map(([limit, n]) => [limit, n - (b.get(limit) ?? 0)]).filter(([, n]) => n > 0)
  .sort((x, y) => x[0] - y[0]);
const syncs = hist.reduce((s, [, n]) => s + n, 0);
const quantile = (q) => {
  let seen = 0;
  for (const [limit, n] of hist) if ((seen += n) >= q * syncs) return limit;
  return 0;
};
const writes = after.writes - before.writes;
const groups = after.groups - before.groups;
const meanUs = syncs ? Math.round((after.syncTotalUs - before.syncTotalUs) / syncs) : 0;
console.log(`${writes} writes in ${groups} groups (${groups ? (writes / groups).toFixed(2) : 0} per group), ` +
  `${syncs} WAL syncs: mean ${meanUs} µs, p50 ≤ ${quantile(0.5)} µs, p99 ≤ ${quantile(0.99)} µs`);
