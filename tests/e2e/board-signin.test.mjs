// The ward board signed in through Bevan's own authorization server, in a real browser: with
// authorization on, opening the board sends the clinician to /auth/authorize (SMART authorization
// code + PKCE S256, client bevan-web), the login page takes a local account made with
// `bevan user add`, the board comes back with a token and shows the ward the clinician belongs to,
// live. A wrong password stays on the login page. Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, runBevan, tempDir, BIN, SLOW } from '../api/lib/server.mjs';
import { authKit } from '../api/lib/auth.mjs';
import { seedWard } from './lib/ward.mjs';

const CHROMIUM = process.env.BEVAN_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = join(dirname(BIN), 'e2e-artifacts');
const NURSE = 'Practitioner/signin-nurse';

let data;
let srv;
let browser;
let ward;
let patients;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM} (scripts/install-deps.sh installs Debian's chromium)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  data = tempDir('bevan-signin-');
  // first start: keys; seed a ward whose team has the nurse; then stop to add the local account
  const first = await startServer({ auth: true, data, keepData: true });
  const kit = await authKit(first);
  const sys = kit.as(kit.system());
  ({ ward, patients } = await seedWard(sys, 'Ward S', [
    { family: 'Calm', spo2: [97, 98, 97] },
    { family: 'Falling', spo2: [95, 93, 91], pulse: 70 },
  ]));
  const team = (await sys.get(`/CareTeam/${ward.id}`)).json;
  team.participant = [{ member: { reference: NURSE } }];
  assert.equal((await sys.put(`/CareTeam/${ward.id}`, team)).status, 200);
  await first.stop();
  const add = await runBevan(['user', 'add', '--data', data, '--username', 'nurse1', '--password', 'correct horse battery',
    '--fhir-user', NURSE, '--role', 'clinician', '--scope', 'openid fhirUser user/*.cruds']);
  assert.equal(add.code, 0, add.stderr);
  srv = await startServer({ auth: true, data });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'], timeout: 30_000 * SLOW });
});

after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.stop();
});

async function toLogin(page) {
  await page.goto(`${srv.origin}/web/board.html?ward=${ward.id}`, { timeout: 10_000 * SLOW });
  await page.waitForURL(/\/auth\/authorize/, { timeout: 10_000 * SLOW });
  await page.waitForSelector('input[name=username]', { timeout: 10_000 * SLOW });
}

test('a wrong password stays on the login page and gives no code', async () => {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  try {
    await toLogin(page);
    await page.fill('input[name=username]', 'nurse1');
    await page.fill('input[name=password]', 'wrong');
    await Promise.all([page.waitForLoadState('load', { timeout: 10_000 * SLOW }), page.press('input[name=password]', 'Enter')]);
    assert.ok(!/[?&]code=/.test(page.url()), page.url());
    assert.ok(!page.url().includes('/web/board.html'), `signed in with a wrong password: ${page.url()}`);
  } finally { await page.close(); }
});

test('the clinician signs in on Bevan\'s login page and the board shows the ward, live, with the token', async () => {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  let fhir = 0;
  let bearer = 0;
  page.on('request', (rq) => {
    if (!rq.url().startsWith(`${srv.origin}/fhir/`) || rq.url().includes('.well-known')) return;
    fhir++;
    if (/^Bearer \S+/.test(rq.headers().authorization || '')) bearer++;
  });
  try {
    await toLogin(page);
    await page.fill('input[name=username]', 'nurse1');
    await page.fill('input[name=password]', 'correct horse battery');
    await page.press('input[name=password]', 'Enter');
    await page.waitForURL(/\/web\/board\.html/, { timeout: 10_000 * SLOW });
    await page.waitForFunction((k) => document.querySelectorAll('#patients tbody tr').length === k, patients.length,
      { timeout: 15_000 * SLOW });
    await page.waitForFunction(() => document.getElementById('live-state').textContent === 'live', null, { timeout: 15_000 * SLOW });
    await page.screenshot({ path: join(ARTIFACTS, 'board-signed-in.png') });
    assert.ok(fhir > 0 && bearer === fhir, `${bearer} of ${fhir} FHIR requests carried a bearer token`);
    assert.equal(new URL(page.url()).searchParams.get('code'), null, 'the code is gone from the address bar');
    assert.deepEqual(errors, []);
  } finally { await page.close(); }
});
