// Writes one file of requests per benchmark query (bench/wrk/paths.lua format) with values
// sampled from a `bevan demo` store: node bench/search/make-paths.mjs DB OUTDIR [N]
// The store is only read (sqlite3 shell, read-only); the same store is then served.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [db, out, nArg] = process.argv.slice(2);
if (!db || !out) { console.error('usage: make-paths.mjs DB OUTDIR [N]'); process.exit(2); }
const N = Number(nArg || 200);
mkdirSync(out, { recursive: true });
const sql = (q) => execFileSync('sqlite3', ['-readonly', '-separator', '\t', db, q], { maxBuffer: 1 << 28 })
  .toString().split('\n').filter(Boolean).map((l) => l.split('\t'));
const enc = encodeURIComponent;
const NHS = 'https://fhir.nhs.uk/Id/nhs-number';
const LOINC = 'http://loinc.org';

// N random patients with their family name, birth date, NHS number and practice
const pats = sql(`SELECT id, json_extract(body, '$.name[0].family'), json_extract(body, '$.birthDate'),
  json_extract(body, '$.identifier[0].value'), json_extract(body, '$.managingOrganization.reference')
  FROM resources WHERE type = 'Patient' AND deleted = 0 ORDER BY random() LIMIT ${Math.max(N, 1000)}`);
const orgs = sql(`SELECT id, json_extract(body, '$.name'), json_extract(body, '$.identifier[0].value')
  FROM resources WHERE type = 'Organization' AND deleted = 0`);
const codes = ['8867-4', '9279-1', '8310-5', '29463-7', '85354-9', '59408-5', '39156-5'];
const conds = ['38341003', '44054006', '195967001', '35489007', '396275006', '709044004'];
const year = (i) => 2023 + (i % 3);
const pickPat = (i) => pats[i % pats.length];
const lines = {};
const add = (name, f) => { lines[name] = Array.from({ length: N }, (_, i) => f(i)); };

add('patient-family', (i) => `/fhir/Patient?family=${enc(pickPat(i)[1])}`);
add('patient-name', (i) => `/fhir/Patient?name=${enc(pickPat(i)[1])}`); // name: its own rows and family's and given's
add('patient-family-birthdate', (i) => `/fhir/Patient?family=${enc(pickPat(i)[1])}&birthdate=${pickPat(i)[2]}`);
add('patient-nhs-number', (i) => `/fhir/Patient?identifier=${enc(`${NHS}|${pickPat(i)[3]}`)}`);
add('obs-patient-code', (i) => `/fhir/Observation?subject=Patient/${pickPat(i)[0]}&code=${enc(`${LOINC}|${codes[i % codes.length]}`)}`);
add('obs-patient-code-daterange', (i) => `/fhir/Observation?subject=Patient/${pickPat(i)[0]}&code=${enc(`${LOINC}|${codes[i % codes.length]}`)}`
  + `&date=ge${year(i)}-01-01&date=lt${year(i) + 1}-01-01`);
add('obs-patient-code-sort', (i) => `/fhir/Observation?subject=Patient/${pickPat(i)[0]}&code=${enc(`${LOINC}|${codes[i % codes.length]}`)}&_sort=-date&_count=20`);
add('obs-patient-sort-10', (i) => `/fhir/Observation?patient=${pickPat(i)[0]}&_sort=-date&_count=10`);
add('obs-code-date', (i) => `/fhir/Observation?code=${enc(`${LOINC}|${codes[i % codes.length]}`)}&date=ge2025-12-${String(1 + (i % 28)).padStart(2, '0')}`);
add('chain-subject-name', (i) => `/fhir/Observation?subject:Patient.name=${enc(pickPat(i)[1])}&code=${enc(`${LOINC}|${codes[i % codes.length]}`)}`);
add('chain-two-level', (i) => `/fhir/Observation?patient.organization.identifier=${enc(orgs[i % orgs.length][2])}&code=${enc(`${LOINC}|${codes[i % codes.length]}`)}&date=ge2025-12-01`);
add('has-condition', (i) => `/fhir/Patient?_has:Condition:subject:code=${conds[i % conds.length]}&family=${enc(pickPat(i)[1])}`);
add('has-condition-broad', (i) => `/fhir/Patient?_has:Condition:subject:code=${conds[i % conds.length]}&_count=20`);
add('include-requester', (i) => `/fhir/MedicationRequest?subject=Patient/${pickPat(i)[0]}&_include=MedicationRequest:requester`);
add('revinclude-conditions', (i) => `/fhir/Patient?identifier=${enc(`${NHS}|${pickPat(i)[3]}`)}&_revinclude=Condition:subject`);
add('total-accurate-code', (i) => `/fhir/Observation?code=${enc(`${LOINC}|${codes[i % codes.length]}`)}&_total=accurate&_count=10`);
add('summary-count-code', (i) => `/fhir/Condition?code=${conds[i % conds.length]}&_summary=count`);
// 500 values in a GET: 5 real codes and 495 that match nothing (still probed)
add('or-500-codes', (i) => `/fhir/Observation?code=${[...codes.slice(0, 1 + (i % 5)), ...Array.from({ length: 499 - (i % 5) }, (_, k) => `x${i}-${k}`)].join(',')}&_count=20`);
// 1,000 NHS numbers (all real) in a POST _search (too long for a URL)
add('or-1000-nhs-post', (i) => {
  const vals = Array.from({ length: 1000 }, (_, k) => `${NHS}|${pats[(i + k) % pats.length][3]}`);
  return `POST\t/fhir/Patient/_search\tidentifier=${enc(vals.join(','))}&_count=20`;
});
for (const [name, ls] of Object.entries(lines)) writeFileSync(join(out, `${name}.txt`), `${ls.join('\n')}\n`);
console.log(Object.keys(lines).join(' '));
