// The official R4 example instances (npm hl7.fhir.r4.examples@4.0.1): every clinical/administrative
// example (all types but the conformance ones, less the 12 definition Bundles: 707 files, the
// issue's count) is PUT to /fhir/<Type>/<id>, accepted (200/201), and reads back semantically
// equal to the original (member order ignored, numbers by value, meta.versionId/lastUpdated
// ignored). Files that docs/validation.md documents as invalid (Basic-referral.json: unknown
// modifierExtension; Questionnaire-qs1.json: items without the required linkId) must instead be
// refused with a 4xx.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { startServer, client, EXAMPLES_DIR } from './lib/server.mjs';
import { exampleFiles, putAndCompare, summarise, documentedRejections } from './lib/examples.mjs';

const skip = existsSync(EXAMPLES_DIR) ? false : `npm package hl7.fhir.r4.examples is not installed (${EXAMPLES_DIR})`;
let srv;
let c;
before(async () => { if (!skip) { srv = await startServer(); c = client(srv.base); } });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

test('the 707 official example instances are accepted and read back equal (bar the documented invalid ones)', { skip }, async () => {
  const files = exampleFiles('examples');
  const documented = documentedRejections(files);
  const res = await putAndCompare(c, files, { concurrency: 4, expectRejected: documented });
  const report = summarise('examples', files, res);
  console.log(report);
  assert.equal(files.length, 707, 'the issue counts 707 example instances');
  assert.deepEqual(res.rejected, [], report);
  assert.deepEqual(res.different, [], report);
  assert.equal(res.equal + res.expectedRejections.length, files.length, report);
  // what docs/validation.md documents as invalid is still refused with a 4xx and an outcome
  assert.deepEqual(res.unexpectedAccepts, [], 'documented rejections are still rejected');
  for (const x of res.expectedRejections) assert.ok(x.status === 400 || x.status === 422, `${x.file}: ${x.status}`);
  // a second PUT of each is an update: version 2, and still equal
  const again = await putAndCompare(c, files.slice(0, 25), { concurrency: 4, expectRejected: documented });
  assert.equal(again.rejected.length, 0);
  assert.ok(again.different.every((d) => /versionId 2/.test(d.diff)), summarise('examples (again)', files.slice(0, 25), again));
});
