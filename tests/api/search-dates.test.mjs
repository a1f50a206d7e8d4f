// Date search: prefixes with implicit ranges, Period overlap, and values without a time zone taken
// in the server's zone (`--tz`, default UTC): around midnight and across both DST changes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, assertOutcome } from './lib/server.mjs';

let utc;
let lon;
let cu;
let cl;
const ids = { utc: {}, lon: {} };
async function seed(c, into) {
  const mk = async (res) => { const r = await c.post(`/${res.resourceType}`, res); assert.equal(r.status, 201, r.text); return r.json.id; };
  into.june = await mk({ resourceType: 'Patient', birthDate: '2021-06-15' });
  into.spring = await mk({ resourceType: 'Observation', status: 'final', code: { text: 'd' }, effectiveDateTime: '2021-03-28' });
  into.autumn = await mk({ resourceType: 'Observation', status: 'final', code: { text: 'd' }, effectiveDateTime: '2021-10-31' });
  into.instant = await mk({ resourceType: 'Observation', status: 'final', code: { text: 'd' }, effectiveDateTime: '2021-06-15T10:30:00Z' });
  into.period = await mk({ resourceType: 'Observation', status: 'final', code: { text: 'd' },
    effectivePeriod: { start: '2020-01-10T00:00:00Z', end: '2020-01-20T00:00:00Z' } });
  into.open = await mk({ resourceType: 'Observation', status: 'final', code: { text: 'd' }, effectivePeriod: { start: '2019-05-01T00:00:00Z' } });
}
before(async () => {
  utc = await startServer();
  lon = await startServer({ args: ['--tz', 'Europe/London'] });
  cu = client(utc.base);
  cl = client(lon.base);
  await seed(cu, ids.utc);
  await seed(cl, ids.lon);
});
after(async () => {
  for (const s of [utc, lon]) if (s) { await s.stop(); s.kill(); }
});

const q = async (c, url) => {
  const r = await c.get(url);
  assert.equal(r.status, 200, `${url}: ${r.text.slice(0, 300)}`);
  return (r.json.entry || []).map((e) => e.resource.id).sort();
};
const has = async (c, url, id, want) => assert.equal((await q(c, url)).includes(id), want, `${url} ${want ? 'should' : 'should not'} match`);
const enc = encodeURIComponent;

test('an unknown --tz is refused at start-up', async () => {
  await assert.rejects(startServer({ args: ['--tz', 'Mars/Olympus'] }), /exited early|time zone/);
});

test('a date without a zone is a day in the server zone: around midnight', async () => {
  // Europe/London in June is UTC+1: 2021-06-15 is [2021-06-14T23:00Z, 2021-06-15T23:00Z)
  await has(cl, '/Patient?birthdate=2021-06-15', ids.lon.june, true);
  await has(cu, '/Patient?birthdate=2021-06-15', ids.utc.june, true);
  await has(cl, `/Patient?birthdate=lt${enc('2021-06-14T23:30:00Z')}`, ids.lon.june, true);
  await has(cu, `/Patient?birthdate=lt${enc('2021-06-14T23:30:00Z')}`, ids.utc.june, false);
  await has(cl, `/Patient?birthdate=gt${enc('2021-06-15T23:30:00Z')}`, ids.lon.june, false);
  await has(cu, `/Patient?birthdate=gt${enc('2021-06-15T23:30:00Z')}`, ids.utc.june, true);
  // a query dateTime without a zone is local too: 00:30 in London is 23:30Z the day before
  await has(cl, '/Patient?birthdate=lt2021-06-15T00:30', ids.lon.june, true);
  await has(cl, '/Patient?birthdate=lt2021-06-14T23:59', ids.lon.june, false);
  // a value with a zone is never shifted
  await has(cl, `/Observation?date=${enc('2021-06-15T10:30:00Z')}`, ids.lon.instant, true);
  await has(cl, `/Observation?date=${enc('2021-06-15T11:30:00+01:00')}`, ids.lon.instant, true);
});

test('days across the DST changes are 23 and 25 hours long', async () => {
  // 2021-03-28 in London: 00:00Z .. 23:00Z (23 h)
  await has(cl, `/Observation?date=gt${enc('2021-03-28T22:30:00Z')}`, ids.lon.spring, true);
  await has(cl, `/Observation?date=gt${enc('2021-03-28T23:00:00Z')}`, ids.lon.spring, false);
  await has(cl, `/Observation?date=lt${enc('2021-03-28T00:00:00Z')}`, ids.lon.spring, false);
  await has(cu, `/Observation?date=gt${enc('2021-03-28T23:00:00Z')}`, ids.utc.spring, true);
  // 2021-10-31 in London: 2021-10-30T23:00Z .. 2021-11-01T00:00Z (25 h)
  await has(cl, `/Observation?date=lt${enc('2021-10-30T23:30:00Z')}`, ids.lon.autumn, true);
  await has(cl, `/Observation?date=lt${enc('2021-10-30T23:00:00Z')}`, ids.lon.autumn, false);
  await has(cl, `/Observation?date=gt${enc('2021-10-31T23:30:00Z')}`, ids.lon.autumn, true);
  await has(cl, '/Observation?date=2021-10-31', ids.lon.autumn, true);
  await has(cl, '/Observation?date=2021-10', ids.lon.autumn, true);
});

test('prefixes with implicit ranges, and Period overlap', async () => {
  const c = cu;
  const I = ids.utc;
  await has(c, '/Observation?date=2021', I.instant, true);
  await has(c, '/Observation?date=2021-06', I.instant, true);
  await has(c, '/Observation?date=eq2021-06-15', I.instant, true);
  await has(c, '/Observation?date=ne2021-06-15', I.instant, false);
  await has(c, '/Observation?date=ne2021-06-16', I.instant, true);
  await has(c, '/Observation?date=gt2021-06-14', I.instant, true);
  await has(c, '/Observation?date=gt2021-06-15', I.instant, false);
  await has(c, '/Observation?date=ge2021-06-15', I.instant, true);
  await has(c, '/Observation?date=lt2021-06-15', I.instant, false);
  await has(c, '/Observation?date=le2021-06-15', I.instant, true);
  await has(c, '/Observation?date=sa2021-06-14', I.instant, true);
  await has(c, '/Observation?date=sa2021-06-15', I.instant, false);
  await has(c, '/Observation?date=eb2021-06-16', I.instant, true);
  await has(c, '/Observation?date=eb2021-06-15', I.instant, false);
  await has(c, '/Observation?date=ap2021-06-20', I.instant, true);
  await has(c, '/Observation?date=ap2015-06-20', I.instant, false);
  // Period [2020-01-10, 2020-01-20]: eq needs containment, the others overlap
  await has(c, '/Observation?date=2020-01-15', I.period, false);
  await has(c, '/Observation?date=2020-01', I.period, true);
  await has(c, '/Observation?date=ge2020-01-15', I.period, true);
  await has(c, '/Observation?date=le2020-01-15', I.period, true);
  await has(c, '/Observation?date=gt2020-01-20', I.period, false);
  await has(c, '/Observation?date=sa2020-01-09', I.period, true);
  await has(c, '/Observation?date=sa2020-01-10', I.period, false);
  await has(c, '/Observation?date=eb2020-01-21', I.period, true);
  await has(c, '/Observation?date=ap2020-01-15', I.period, true);
  // an open-ended Period (no end) overlaps everything after its start
  await has(c, '/Observation?date=gt2030-01-01', I.open, true);
  await has(c, '/Observation?date=lt2019-01-01', I.open, false);
  assertOutcome(await c.get('/Observation?date=xx2020'), 400, 'bad prefix');
  assertOutcome(await c.get('/Observation?date=2020-02-30'), 400, 'bad date');
});

// Found by the search oracle: ne is a per-value prefix like the others ("any value is not equal"),
// so a resource without the element never matches and one with several values matches when one
// of them differs. It used to be "no value equals", which returned resources with no value at all.
test('ne matches per value: not resources without one, yes when one of several values differs', async () => {
  const mk = async (res) => { const r = await cu.post(`/${res.resourceType}`, res); assert.equal(r.status, 201, r.text); return r.json.id; };
  const tag = { system: 'http://example.org/ne', code: 'ne' };
  const none = await mk({ resourceType: 'Patient', meta: { tag: [tag] }, name: [{ family: 'NoBirthDate' }] });
  const born = await mk({ resourceType: 'Patient', meta: { tag: [tag] }, birthDate: '1985-05-20' });
  const two = await mk({ resourceType: 'RiskAssessment', status: 'final', subject: { reference: `Patient/${born}` }, meta: { tag: [tag] },
    prediction: [{ probabilityDecimal: 0.25 }, { probabilityDecimal: 0.6 }] });
  const one = await mk({ resourceType: 'RiskAssessment', status: 'final', subject: { reference: `Patient/${born}` }, meta: { tag: [tag] },
    prediction: [{ probabilityDecimal: 0.25 }] });
  const noval = await mk({ resourceType: 'RiskAssessment', status: 'final', subject: { reference: `Patient/${born}` }, meta: { tag: [tag] } });
  const t = `_tag=${enc('http://example.org/ne|ne')}`;
  assert.deepEqual(await q(cu, `/Patient?${t}&birthdate=ne1985-05`), []);
  assert.deepEqual(await q(cu, `/Patient?${t}&birthdate=ne1990`), [born]);
  await has(cu, `/Patient?${t}&birthdate=ne1990`, none, false);
  assert.deepEqual(await q(cu, `/RiskAssessment?${t}&probability=ne0.25`), [two]);
  assert.deepEqual(await q(cu, `/RiskAssessment?${t}&probability=ne0.6`), [one, two].sort());
  assert.ok(!(await q(cu, `/RiskAssessment?${t}&probability=ne0.3`)).includes(noval));
});
