// The ward board and the patient page in a real browser (Debian's chromium driven by
// playwright-core): patients ordered by risk; a red reading posted through the API and one entered
// on the patient page show on the open board within two seconds without a reload (websocket
// Subscription); an alert is acknowledged and closed from the board; the patient page gives the
// advice for the band. Screenshots go to BUILD/e2e-artifacts/. Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, client, BIN, SLOW } from '../api/lib/server.mjs';
import { seedWard, raiseAlert, readingBundle } from './lib/ward.mjs';

const CHROMIUM = process.env.BEVAN_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = join(dirname(BIN), 'e2e-artifacts');
const LIVE_MS = 2000;   // the bound for a new reading to show without a reload

let srv;
let c;
let browser;
let ward;
let patients;
let alert;

// Visible form controls with neither a <label> nor an accessible name (first 120 characters of each).
function unlabelledControls(page) {
  return page.$$eval('input, select, textarea, button', (els) => els.filter((e) => {
    if (e.type === 'hidden' || e.closest('[hidden]')) return false;
    const byFor = e.id && document.querySelector(`label[for="${e.id}"]`);
    const name = (e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.textContent || '').trim();
    return !(byFor || e.closest('label') || name);
  }).map((e) => e.outerHTML.slice(0, 120)));
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM} (scripts/install-deps.sh installs Debian's chromium)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  srv = await startServer();
  c = client(srv.base);
  ({ ward, patients } = await seedWard(c, 'Ward 7', [
    { family: 'Green', spo2: [97, 98, 97, 96, 97, 98] },
    { family: 'Amber', spo2: [97, 96, 95, 95, 94, 93] },
    { family: 'Red', spo2: [95, 94, 93, 92, 92, 91], pulse: 72 },
    { family: 'Steady', spo2: [96, 96, 97] },
  ]));
  alert = await raiseAlert(c, patients[2].id, ward.id, 'spo2-red', 'asap');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'], timeout: 30_000 * SLOW });
});

after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.stop();
});

async function openBoard(w = ward, n = patients.length) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${srv.origin}/web/board.html?ward=${w.id}`, { timeout: 10_000 * SLOW });
  await page.waitForFunction((k) => document.querySelectorAll('#patients tbody tr').length === k, n,
    { timeout: 10_000 * SLOW });
  await page.waitForFunction(() => document.getElementById('live-state').textContent === 'live', null, { timeout: 10_000 * SLOW });
  return { page, errors };
}
const order = (page) => page.$$eval('#patients tbody tr', (rs) => rs.map((r) => r.dataset.patient));

test('the pages are served without a token, with a strict CSP', async () => {
  for (const f of ['board.html', 'patient.html', 'fhir.js', 'board.js', 'patient.js', 'app.css', 'vendor/uPlot.iife.min.js']) {
    const r = await fetch(`${srv.origin}/web/${f}`);
    assert.equal(r.status, 200, f);
    if (f.endsWith('.html')) assert.match(r.headers.get('content-security-policy'), /script-src 'self'/);
  }
  for (const bad of ['../CMakeLists.txt', '.stamp', 'vendor/../../x', 'nope.html']) {
    const r = await fetch(`${srv.origin}/web/${bad}`);
    assert.equal(r.status, 404, bad);
  }
  assert.equal((await fetch(`${srv.origin}/web/`, { redirect: 'manual' })).status, 302);
});

test('the board lists the ward\'s patients ordered by risk', async () => {
  const { page, errors } = await openBoard();
  try {
    const ids = await order(page);
    // red (with an open asap alert) first, amber second, the two green ones after
    assert.equal(ids[0], patients[2].id);
    assert.equal(ids[1], patients[1].id);
    assert.deepEqual(new Set(ids.slice(2)), new Set([patients[0].id, patients[3].id]));
    const first = await page.$eval('#patients tbody tr', (r) => r.innerText);
    assert.match(first, /91%/);
    assert.match(first, /High/);
    // every row has its trend chart
    await page.waitForFunction((n) => document.querySelectorAll('#patients td.trend canvas').length === n, patients.length,
      { timeout: 5000 * SLOW });
    const alerts = await page.$$eval('#alerts > li', (ls) => ls.map((l) => l.dataset.task));
    assert.ok(alerts.includes(alert.task.id));
    await page.screenshot({ path: join(ARTIFACTS, 'board.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally { await page.close(); }
});

test('a red reading posted through the API shows on the open board within 2 s, without a reload', async () => {
  const { page, errors } = await openBoard();
  try {
    await page.evaluate(() => { window.__noReload = 'still here'; });
    const target = patients[3];   // green so far
    const r = await c.post('/', readingBundle(target.id, 88, 104));
    assert.equal(r.status, 200, r.text);
    // bounded wait: the row shows the red value and moves up to the top
    await page.waitForFunction((id) => {
      const row = document.querySelector(`#patients tbody tr[data-patient="${id}"]`);
      return row && /88%/.test(row.innerText) && row.querySelector('td.band-red') &&
        document.querySelector('#patients tbody tr').dataset.patient === id;
    }, target.id, { timeout: LIVE_MS * SLOW, polling: 50 });
    assert.equal(await page.evaluate(() => window.__noReload), 'still here');
    // an alert raised for it appears as well
    const a = await raiseAlert(c, target.id, ward.id, 'spo2-red', 'asap');
    await page.waitForSelector(`#alerts li[data-task="${a.task.id}"]`, { timeout: LIVE_MS * SLOW });
    await page.screenshot({ path: join(ARTIFACTS, 'board-live-red.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally { await page.close(); }
});

test('an alert is acknowledged and closed from the board (Task accepted, then completed, with notes)', async () => {
  const { page, errors } = await openBoard();
  try {
    const sel = `#alerts li[data-task="${alert.task.id}"]`;
    await page.fill(`${sel} input`, 'Called the patient, reading repeated');
    await page.click(`${sel} button.ack`);
    await page.waitForFunction((s) => {
      const li = document.querySelector(s);
      return li && /accepted/.test(li.innerText) && !li.querySelector('button.ack');
    }, sel, { timeout: 5000 * SLOW });
    let t = (await c.get(`/Task/${alert.task.id}`)).json;
    assert.equal(t.status, 'accepted');
    assert.ok(t.note.some((n) => n.text === 'Called the patient, reading repeated'));
    await page.fill(`${sel} input`, 'Admitted to hospital');
    await page.click(`${sel} button.close`);
    await page.waitForSelector(sel, { state: 'detached', timeout: 5000 * SLOW });
    t = (await c.get(`/Task/${alert.task.id}`)).json;
    assert.equal(t.status, 'completed');
    assert.deepEqual(t.note.map((n) => n.text), ['Called the patient, reading repeated', 'Admitted to hospital']);
    await page.screenshot({ path: join(ARTIFACTS, 'board-after-close.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally { await page.close(); }
});

test('the patient page sends a reading as a transaction, shows the advice, and the board shows it live', async () => {
  const board = await openBoard();
  const page = await browser.newPage({ viewport: { width: 820, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    const target = patients[0];
    await page.goto(`${srv.origin}/web/patient.html?patient=${target.id}`, { timeout: 10_000 * SLOW });
    await page.waitForSelector('#entry:not([hidden])', { timeout: 10_000 * SLOW });
    assert.equal(await page.getAttribute('#advice', 'data-band'), 'green');
    assert.match(await page.textContent('#advice-text'), /Keep taking your readings/);
    // a few taps: 96 - 5 = 91
    await page.fill('#spo2', '96');
    for (let i = 0; i < 5; i++) await page.click('button.step[data-for=spo2][data-step="-1"]');
    await page.fill('#pulse', '90');
    const before = await c.count(`Observation?subject=Patient/${target.id}`);
    await page.click('#send');
    await page.waitForSelector('#advice[data-band=red]', { timeout: 5000 * SLOW });
    assert.match(await page.textContent('#advice-text'), /Call 999/);
    assert.equal(await c.count(`Observation?subject=Patient/${target.id}`), before + 2);
    const latest = await c.get(`Observation?subject=Patient/${target.id}&code=http://loinc.org|59408-5&_sort=-date&_count=1`);
    assert.equal(latest.json.entry[0].resource.valueQuantity.value, 91);
    await page.screenshot({ path: join(ARTIFACTS, 'patient-red.png'), fullPage: true });
    // the clinician's board, open all along, shows it without a reload
    await board.page.waitForFunction((id) => {
      const row = document.querySelector(`#patients tbody tr[data-patient="${id}"]`);
      return row && /91%/.test(row.innerText) && row.querySelector('td.band-red');
    }, target.id, { timeout: LIVE_MS * SLOW, polling: 50 });
    // amber advice for an amber reading
    await page.fill('#spo2', '94');
    await page.click('#send');
    await page.waitForSelector('#advice[data-band=amber]', { timeout: 5000 * SLOW });
    assert.match(await page.textContent('#advice-text'), /GP practice|111/);
    assert.deepEqual(errors, []);
    assert.deepEqual(board.errors, []);
  } finally {
    await page.close();
    await board.page.close();
  }
});

test('admit and discharge from the board', async () => {
  const { page, errors } = await openBoard();
  try {
    await page.click('#enrol-box summary');
    await page.fill('#enrol input[name=given]', 'Ada');
    await page.fill('#enrol input[name=family]', 'Admitted');
    await page.fill('#enrol input[name=birthDate]', '1948-03-02');
    await page.fill('#enrol input[name=contact]', '01234 567890');
    await page.click('#enrol button[type=submit]');
    await page.waitForFunction((n) => document.querySelectorAll('#patients tbody tr').length === n, patients.length + 1,
      { timeout: 5000 * SLOW });
    const plans = await c.get(`CarePlan?care-team=CareTeam/${ward.id}&status=active&_include=CarePlan:subject`);
    const pat = plans.json.entry.map((e) => e.resource).find((r) => r.resourceType === 'Patient' && r.name[0].family === 'Admitted');
    assert.ok(pat, 'the new patient is on the ward');
    const cp = plans.json.entry.map((e) => e.resource).find((r) => r.resourceType === 'CarePlan' && r.subject.reference === `Patient/${pat.id}`);
    const ext = cp.extension.find((e) => e.url === 'http://bevan.dev/fhir/StructureDefinition/monitoring-plan');
    assert.deepEqual(ext.extension.filter((e) => e.url === 'readingTime').map((e) => e.valueTime), ['08:00:00', '13:00:00', '18:00:00']);
    // discharge from the patient view
    await page.click(`#patients tbody tr[data-patient="${pat.id}"] td:last-child button`);
    await page.waitForSelector('#patient-view:not([hidden])');
    await page.click('#discharge button[type=submit]');
    await page.waitForFunction((n) => document.querySelectorAll('#patients tbody tr').length === n, patients.length,
      { timeout: 5000 * SLOW });
    const after = (await c.get(`CarePlan/${cp.id}`)).json;
    assert.equal(after.status, 'completed');
    assert.ok(after.period.end);
    assert.deepEqual(errors, []);
  } finally { await page.close(); }
});

test('sign-in: with an authorization endpoint advertised, the board runs SMART authorization code + PKCE S256 (bevan-web) and sends the token', async () => {
  // The authorization server is stood in for by request interception (the real one is docs/security.md's):
  // discovery, /auth/authorize (redirects back with a code) and /auth/token (checks the PKCE verifier).
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const seen = { authorize: null, token: null, bearer: 0, fhir: 0 };
  const boardUrl = `${srv.origin}/web/board.html`;
  try {
    await page.route('**/fhir/.well-known/smart-configuration', (r) => r.fulfill({ status: 200, contentType: 'application/json',
      body: JSON.stringify({ authorization_endpoint: `${srv.origin}/auth/authorize`, token_endpoint: `${srv.origin}/auth/token`,
        code_challenge_methods_supported: ['S256'] }) }));
    await page.route('**/auth/authorize?**', (r) => {
      const u = new URL(r.request().url());
      seen.authorize = Object.fromEntries(u.searchParams);
      const back = `${seen.authorize.redirect_uri}?code=the-code&state=${encodeURIComponent(seen.authorize.state)}`;
      return r.fulfill({ status: 200, contentType: 'text/html', body: `<script>location.replace(${JSON.stringify(back)})</script>` });
    });
    await page.route('**/auth/token', (r) => {
      seen.token = Object.fromEntries(new URLSearchParams(r.request().postData() || ''));
      const challenge = createHash('sha256').update(seen.token.code_verifier || '').digest('base64url');
      const ok = seen.token.code === 'the-code' && challenge === seen.authorize?.code_challenge;
      return r.fulfill({ status: ok ? 200 : 400, contentType: 'application/json',
        body: JSON.stringify(ok ? { access_token: 'token-123', token_type: 'Bearer', expires_in: 3600, scope: seen.authorize.scope }
          : { error: 'invalid_grant' }) });
    });
    page.on('request', (rq) => {
      if (!rq.url().startsWith(`${srv.origin}/fhir/`) || rq.url().includes('.well-known')) return;
      seen.fhir++;
      if (rq.headers().authorization === 'Bearer token-123') seen.bearer++;
    });
    await page.goto(`${boardUrl}?ward=${ward.id}`, { timeout: 10_000 * SLOW });
    await page.waitForFunction(() => document.getElementById('live-state').textContent === 'live', null, { timeout: 10_000 * SLOW });
    const a = seen.authorize;
    assert.equal(a.response_type, 'code');
    assert.equal(a.client_id, 'bevan-web');
    assert.equal(a.redirect_uri, boardUrl);
    assert.equal(a.code_challenge_method, 'S256');
    assert.match(a.code_challenge, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(a.aud, `${srv.origin}/fhir`);
    assert.ok(a.state && a.state.length >= 16);
    assert.match(a.scope, /user\/\*\.cruds/);
    assert.equal(seen.token.grant_type, 'authorization_code');
    assert.equal(seen.token.client_id, 'bevan-web');
    assert.equal(seen.token.redirect_uri, boardUrl);
    assert.ok(seen.fhir > 0 && seen.bearer === seen.fhir, `${seen.bearer} of ${seen.fhir} FHIR requests carried the token`);
    // the code and state are gone from the address bar; the ward parameter is back
    assert.equal(new URL(page.url()).searchParams.get('code'), null);
    assert.equal(new URL(page.url()).searchParams.get('ward'), ward.id);
    assert.equal(await page.$$eval('#patients tbody tr', (rs) => rs.length) > 0, true);
    assert.deepEqual(errors, []);
  } finally { await page.close(); }
});

test('the issue\'s scenario: a red reading entered on the patient page becomes an alert (raised by the care service) on the open board within 2 s; the clinician acknowledges it', async () => {
  const { ward: w8, patients: [fresh] } = await seedWard(c, 'Ward 8', [{ family: 'Fresh', spo2: [97, 97, 98] }]);
  const board = await openBoard(w8, 1);
  const page = await browser.newPage({ viewport: { width: 820, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    assert.equal(await board.page.$$eval('#alerts > li', (ls) => ls.length), 0, 'no alert before the reading');
    await page.goto(`${srv.origin}/web/patient.html?patient=${fresh.id}`, { timeout: 10_000 * SLOW });
    await page.waitForSelector('#entry:not([hidden])', { timeout: 10_000 * SLOW });
    await page.fill('#spo2', '90');
    await page.click('#send');
    await page.waitForSelector('#advice[data-band=red]', { timeout: 5000 * SLOW });
    const sel = `#alerts li[data-patient="${fresh.id}"][data-code="spo2-red"]`;
    await board.page.waitForSelector(sel, { timeout: LIVE_MS * SLOW });
    const taskId = await board.page.getAttribute(sel, 'data-task');
    const t0 = (await c.get(`/Task/${taskId}`)).json;
    assert.equal(t0.status, 'requested');
    assert.equal(t0.owner.reference, `CareTeam/${w8.id}`);
    await board.page.fill(`${sel} input`, 'Rang the patient: ambulance called');
    await board.page.click(`${sel} button.ack`);
    await board.page.waitForFunction((s) => { const li = document.querySelector(s); return li && !li.querySelector('button.ack'); },
      sel, { timeout: 5000 * SLOW });
    const t1 = (await c.get(`/Task/${taskId}`)).json;
    assert.equal(t1.status, 'accepted');
    assert.ok(t1.note.some((n) => n.text === 'Rang the patient: ambulance called'));
    await board.page.screenshot({ path: join(ARTIFACTS, 'board-care-alert-acknowledged.png'), fullPage: true });
    assert.deepEqual(errors, []);
    assert.deepEqual(board.errors, []);
  } finally {
    await page.close();
    await board.page.close();
  }
});

test('tablet and accessibility basics: no sideways scrolling at 768 px, every control labelled, keyboard reaches the alerts', async () => {
  const page = await browser.newPage({ viewport: { width: 768, height: 1024 }, hasTouch: true });
  try {
    await page.goto(`${srv.origin}/web/board.html?ward=${ward.id}`, { timeout: 10_000 * SLOW });
    await page.waitForFunction((k) => document.querySelectorAll('#patients tbody tr').length === k, patients.length,
      { timeout: 10_000 * SLOW });
    await page.waitForFunction(() => document.getElementById('live-state').textContent === 'live', null, { timeout: 10_000 * SLOW });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    const wide = overflow > 1 ? await page.evaluate(() => [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1 && !e.closest('.panel.wide'))
      .slice(0, 5).map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)) : [];
    assert.ok(overflow <= 1, `the board scrolls sideways by ${overflow}px at 768px: ${wide.join(', ')}`);
    const unlabelled = await unlabelledControls(page);
    assert.deepEqual(unlabelled, [], 'controls without a label or name');
    assert.ok(await page.$('table caption, table[aria-label], table[aria-labelledby]'), 'the patient table has a caption');
    // keyboard: Tab lands on an alert's note field or button within a bounded number of presses
    let reached = false;
    for (let i = 0; i < 80 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => !!document.activeElement?.closest('#alerts'));
    }
    assert.ok(reached, 'Tab never reached the alerts');
    await page.screenshot({ path: join(ARTIFACTS, 'board-tablet.png'), fullPage: true });
  } finally { await page.close(); }
});

test('the patient page on a phone (390 px): no sideways scrolling, every control labelled', async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
  try {
    await page.goto(`${srv.origin}/web/patient.html?patient=${patients[0].id}`, { timeout: 10_000 * SLOW });
    await page.waitForSelector('#entry:not([hidden])', { timeout: 10_000 * SLOW });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `the patient page scrolls sideways by ${overflow}px at 390px`);
    const unlabelled = await unlabelledControls(page);
    assert.deepEqual(unlabelled, [], 'controls without a label or name');
    await page.screenshot({ path: join(ARTIFACTS, 'patient-phone.png'), fullPage: true });
  } finally { await page.close(); }
});
