// The rest of hl7.fhir.r4.examples@4.0.1: the specification's own conformance resources
// (StructureDefinition, ValueSet, CodeSystem, SearchParameter, ConceptMap, OperationDefinition, ...)
// and the two definition Bundles under 2 MB. They are valid R4 resources too, so each is PUT and
// read back equal. One SearchParameter's id is 67 characters long (over FHIR's 64): the server must
// refuse it with 400 (under sanitizers every second file is checked). The other errata that docs/validation.md documents (ImplementationGuide-fhir
// without name/status, ten SearchParameters without base) must be refused too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { startServer, client, EXAMPLES_DIR, SLOW } from './lib/server.mjs';
import { exampleFiles, putAndCompare, summarise, documentedRejections } from './lib/examples.mjs';

const skip = existsSync(EXAMPLES_DIR) ? false : `npm package hl7.fhir.r4.examples is not installed (${EXAMPLES_DIR})`;
let srv;
let c;
before(async () => { if (!skip) { srv = await startServer(); c = client(srv.base); } });
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const LONG_ID = 'SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json';

test('conformance resources of the examples package are accepted and read back equal', { skip }, async () => {
  // Under sanitizers (about 3x slower) every second file is checked, to stay well under two
  // minutes; the regular build checks all of them.
  const files = exampleFiles('conformance').filter((f, i) => SLOW === 1 || i % 2 === 0 || f.file === LONG_ID);
  const documented = documentedRejections(files);
  documented.set(LONG_ID, 'id longer than 64 characters');
  const res = await putAndCompare(c, files, { concurrency: 4, expectRejected: documented });
  const report = summarise('conformance resources', files, res);
  console.log(report);
  const long = res.expectedRejections.find((x) => x.file === LONG_ID);
  assert.ok(long && long.status === 400, `the 67-character id is refused with 400: ${JSON.stringify(long)}`);
  assert.deepEqual(res.rejected, [], report);
  assert.deepEqual(res.different, [], report);
  assert.equal(res.equal + res.expectedRejections.length, files.length, report);
  // what docs/validation.md documents as invalid is still refused with a 4xx and an outcome
  assert.deepEqual(res.unexpectedAccepts, [], 'documented rejections are still rejected');
  for (const x of res.expectedRejections) assert.ok(x.status === 400 || x.status === 422, `${x.file}: ${x.status}`);
});
