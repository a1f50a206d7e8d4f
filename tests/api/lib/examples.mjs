// The official R4 example instances (npm hl7.fhir.r4.examples@4.0.1): which files, and the
// PUT-then-read-back check shared by examples.test.mjs and examples-conformance.test.mjs.
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES_DIR, SOURCE_DIR, fhirDiff, pool } from './server.mjs';

/* Conformance (definitional) resource types: the package holds the whole specification's
 * definitions next to its examples. The issue's "707 example instances" are the files of every
 * other type, less the 12 definition Bundles. */
export const CONFORMANCE_TYPES = new Set(['StructureDefinition', 'ValueSet', 'CodeSystem', 'SearchParameter',
  'ConceptMap', 'OperationDefinition', 'CapabilityStatement', 'CompartmentDefinition', 'NamingSystem',
  'ImplementationGuide', 'StructureMap', 'MessageDefinition', 'GraphDefinition', 'TerminologyCapabilities',
  'ExampleScenario']);
export const DEFINITION_BUNDLES = new Set(['Bundle-resources.json', 'Bundle-types.json', 'Bundle-searchParams.json',
  'Bundle-valuesets.json', 'Bundle-v2-valuesets.json', 'Bundle-v3-valuesets.json', 'Bundle-valueset-expansions.json',
  'Bundle-dataelements.json', 'Bundle-extensions.json', 'Bundle-profiles-others.json', 'Bundle-conceptmaps.json',
  'Bundle-terminologies.json']);
export const MAX_BYTES = 2 * 1024 * 1024;

/**
 * Example files that docs/validation.md documents as legitimately rejected: file names (or brace/
 * star patterns such as `SearchParameter-{codesystem,valueset}-extensions-*-{author,end}.json`)
 * quoted in backticks inside a section whose heading mentions examples or rejections.
 * Returns a Map(file -> the documenting line) over the given files.
 */
export function documentedRejections(files = null) {
  const doc = join(SOURCE_DIR, 'docs', 'validation.md');
  const patterns = [];
  if (existsSync(doc)) {
    let inSection = false;
    for (const line of readFileSync(doc, 'utf8').split('\n')) {
      const h = /^#+\s+(.*)$/.exec(line);
      if (h) { inSection = /example|reject|exclu|refused/i.test(h[1]); continue; }
      if (!inSection) continue;
      for (const m of line.matchAll(/`([A-Z][A-Za-z]+-[^`\s]*\.json)`/g)) {
        const re = m[1].replace(/[.+^$()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')
          .replace(/\{([^}]*)\}/g, (_, alts) => `(${alts.split(',').join('|')})`);
        patterns.push([new RegExp(`^${re}$`), line.trim()]);
      }
    }
  }
  const out = new Map();
  const names = files ? files.map((f) => f.file) : readdirSync(EXAMPLES_DIR);
  for (const f of names) {
    const hit = patterns.find(([re]) => re.test(f));
    if (hit) out.set(f, hit[1]);
  }
  return out;
}

/** Every `<Type>-<id>.json` file whose resourceType is Type and id is id, by kind. */
export function exampleFiles(kind) {
  const files = [];
  for (const f of readdirSync(EXAMPLES_DIR).sort()) {
    const m = /^([A-Z][A-Za-z]+)-(.+)\.json$/.exec(f);
    if (!m) continue;
    const type = m[1];
    const conf = CONFORMANCE_TYPES.has(type) || DEFINITION_BUNDLES.has(f);
    if ((kind === 'examples') === conf) continue;
    if (type === 'Bundle' && statSync(join(EXAMPLES_DIR, f)).size > MAX_BYTES) continue; // definition bundles
    files.push({ file: f, type, id: m[2] });
  }
  return files;
}

/**
 * PUT each file to /fhir/<Type>/<id>, then read it back and compare. Returns
 * {accepted, equal, rejected: [{file, status, why}], different: [{file, diff}], skippedDocumented}.
 */
export async function putAndCompare(c, files, { concurrency = 4, expectRejected = new Map() } = {}) {
  const result = { accepted: 0, equal: 0, rejected: [], different: [], expectedRejections: [], unexpectedAccepts: [] };
  await pool(files, concurrency, async ({ file, type, id }) => {
    const raw = readFileSync(join(EXAMPLES_DIR, file));
    const orig = JSON.parse(raw);
    if (orig.resourceType !== type || orig.id !== id) {
      result.rejected.push({ file, status: 0, why: 'file name does not match resourceType/id' });
      return;
    }
    const r = await c.put(`/${type}/${id}`, raw, { timeoutMs: 120_000 });
    const expected = expectRejected.get(file);
    if (r.status !== 200 && r.status !== 201) {
      const why = r.json?.issue ? r.json.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal')
        .slice(0, 3).map((i) => `${(i.expression || []).join(',')}: ${i.diagnostics}`).join(' | ') : r.text.slice(0, 300);
      if (expected) result.expectedRejections.push({ file, status: r.status, why });
      else result.rejected.push({ file, status: r.status, why });
      return;
    }
    if (expected) result.unexpectedAccepts.push({ file, note: expected });
    result.accepted++;
    const back = await c.get(`/${type}/${id}`, { timeoutMs: 60_000 });
    if (back.status !== 200) { result.different.push({ file, diff: `read back ${back.status}` }); return; }
    // R4: the server activates a requested Subscription (docs/subscriptions.md)
    const want = type === 'Subscription' && orig.status === 'requested' ? { ...orig, status: 'active' } : orig;
    const d = fhirDiff(want, back.json);
    if (d) result.different.push({ file, diff: d });
    else result.equal++;
    if (back.json.meta?.versionId !== '1') result.different.push({ file, diff: `versionId ${back.json.meta?.versionId}` });
  });
  return result;
}

export function summarise(label, files, res) {
  const lines = [`# ${label}: ${files.length} files; ${res.accepted} accepted; ${res.equal} read back equal; `
    + `${res.rejected.length} rejected; ${res.different.length} different; `
    + `${res.expectedRejections.length} rejected as documented in docs/validation.md`];
  for (const x of res.rejected.slice(0, 60)) lines.push(`#   rejected ${x.file} (${x.status}): ${x.why}`);
  for (const x of res.different.slice(0, 30)) lines.push(`#   different ${x.file}: ${x.diff}`);
  for (const x of res.expectedRejections) lines.push(`#   documented rejection ${x.file} (${x.status}): ${x.why}`);
  return lines.join('\n');
}
