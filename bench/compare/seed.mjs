// Seeds a FHIR server for bench/compare: N Patients (families from a fixed list), each with 2
// Observations (LOINC 8867-4 heart rate and 8310-5 temperature), as N small transactions with 8
// concurrent clients. Prints the id of a Patient whose family is "Smith" (for read/update/search).
//   node bench/compare/seed.mjs http://127.0.0.1:PORT/fhir N
const [base, nArg = '1000'] = process.argv.slice(2);
const N = Number(nArg);
const FAMILIES = ['Smith', 'Jones', 'Taylor', 'Brown', 'Williams', 'Wilson', 'Johnson', 'Davies', 'Robinson', 'Wright',
  'Thompson', 'Evans', 'Walker', 'White', 'Roberts', 'Green', 'Hall', 'Wood', 'Jackson', 'Clarke'];
let next = 0;
let smithId = null;
let failures = 0;
async function one(i) {
  const u = `urn:uuid:${(i + 1).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
  const obs = (code, v, unit) => ({ resource: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code }] },
    subject: { reference: u }, effectiveDateTime: '2026-01-01T10:00:00Z', valueQuantity: { value: v, unit, system: 'http://unitsofmeasure.org', code: unit } },
  request: { method: 'POST', url: 'Observation' } });
  const b = { resourceType: 'Bundle', type: 'transaction', entry: [
    { fullUrl: u, resource: { resourceType: 'Patient', name: [{ family: FAMILIES[i % FAMILIES.length], given: [`G${i}`] }], gender: i % 2 ? 'male' : 'female', birthDate: '1970-01-01' }, request: { method: 'POST', url: 'Patient' } },
    obs('8867-4', 60 + (i % 40), '/min'), obs('8310-5', 36 + (i % 3), 'Cel')] };
  const r = await fetch(base, { method: 'POST', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(b), signal: AbortSignal.timeout(60_000) });
  const j = await r.json();
  if (r.status !== 200) { failures++; return; }
  if (i % FAMILIES.length === 0 && !smithId) {
    const loc = j.entry[0].response.location || '';
    smithId = (j.entry[0].resource && j.entry[0].resource.id) || loc.split('/')[1];
  }
}
await Promise.all(Array.from({ length: 8 }, async () => { while (next < N) await one(next++); }));
if (failures) console.error(`seed: ${failures} failures`);
console.log(smithId);
