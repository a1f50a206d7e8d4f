// Authentication (reliability-security.md §C 13-16): bearer tokens on every FHIR route but the
// public ones, the token attacks, tokens in the query string, no tokens in logs, audit of failed
// authentication, and Bevan's authorization server (SMART configuration, client_credentials with
// private_key_jwt, authorization_code with PKCE S256, revocation).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createPublicKey, randomUUID, generateKeyPairSync } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, runBevan, tempDir, req, assertOutcome, SLOW } from './lib/server.mjs';
import { authKit, authClient, clientKeys, pkce, form, b64u } from './lib/auth.mjs';

let srv, kit, data;
const seen = [];   // every token used, to check none reaches the logs

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  data = tempDir('bevan-auth-');
  // clients and accounts are registered while the server is stopped (the data folder is locked)
  const keys = clientKeys('ES384');
  writeFileSync(join(data, 'backend.jwks'), JSON.stringify(keys.jwks));
  let r = await runBevan(['client', 'add', '--data', data, '--id', 'backend-1', '--jwks', join(data, 'backend.jwks'),
    '--scope', 'system/*.rs system/Observation.c']);
  assert.equal(r.code, 0, r.stderr);
  r = await runBevan(['user', 'add', '--data', data, '--username', 'alice', '--password', 'correct horse battery',
    '--fhir-user', 'Patient/pa', '--scope', 'openid fhirUser launch/patient patient/*.rs']);
  assert.equal(r.code, 0, r.stderr);
  globalThis.backendKeys = keys;
  srv = await startServer({ auth: true, data, keepData: false });
  kit = await authKit(srv);
  const sys = kit.as(kit.system());
  for (const [id, pid] of [['pa', 'pa'], ['pb', 'pb']]) {
    const p = await sys.put(`/Patient/${id}`, { resourceType: 'Patient', id, name: [{ family: id }] });
    assert.equal(p.status, 201, p.text);
    const o = await sys.put(`/Observation/o-${pid}`, { resourceType: 'Observation', id: `o-${pid}`, status: 'final',
      code: { text: 'x' }, subject: { reference: `Patient/${pid}` } });
    assert.equal(o.status, 201, o.text);
  }
});

after(async () => {
  if (srv) {
    const tokens = seen.filter((t) => t.length > 40);
    for (const t of tokens) assert.ok(!srv.stderr.includes(t), 'a token reached the server log');
    await srv.stop();
  }
});

function expect401(r, what, tok) {
  assertOutcome(r, 401, what);
  const wa = r.headers.get('www-authenticate') || '';
  assert.match(wa, /^Bearer/, `${what}: WWW-Authenticate is ${wa}`);
  if (tok) assert.ok(!r.text.includes(tok), `${what}: the body echoes the token`);
}

test('no token: 401 with WWW-Authenticate: Bearer on every FHIR route but the public ones', async () => {
  const c = authClient(srv.base, null);
  const routes = [
    ['GET', '/Patient'], ['GET', '/Patient/pa'], ['GET', '/Patient/pa/_history'], ['GET', '/Patient/pa/_history/1'],
    ['GET', '/_history'], ['GET', '/Patient/_history'], ['GET', '/'], ['GET', '/Patient/pa/$everything'],
    ['GET', '/Patient/pa/Observation'], ['POST', '/Patient', { resourceType: 'Patient' }],
    ['PUT', '/Patient/pa', { resourceType: 'Patient', id: 'pa' }], ['DELETE', '/Patient/pa'],
    ['POST', '/', { resourceType: 'Bundle', type: 'batch', entry: [] }], ['POST', '/Patient/_search', ''],
    ['POST', '/Patient/$validate', { resourceType: 'Patient' }], ['PUT', '/Patient?identifier=x', { resourceType: 'Patient' }],
  ];
  for (const [m, p, body] of routes) {
    const r = await c.req(m, p, body === undefined ? {} : {
      body, headers: p.endsWith('_search') ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {} });
    expect401(r, `${m} ${p}`);
  }
  assert.equal((await c.get('/metadata')).status, 200);
  const sc = await req('GET', `${srv.origin}/.well-known/smart-configuration`);
  assert.equal(sc.status, 200);
  assert.equal((await c.get('/.well-known/smart-configuration')).status, 200);
  assert.equal((await req('GET', `${srv.origin}/auth/jwks.json`)).status, 200);
  // the built-in CORS exposure lets browser apps read the challenge
  const pre = await req('GET', `${srv.base}/Patient`, { headers: { Origin: 'http://nope.example' } });
  assert.equal(pre.status, 401);
});

test('token attacks are refused with 401 and never echoed', async () => {
  const now = Math.floor(Date.now() / 1000);
  const good = kit.system('system/*.rs');
  seen.push(good);
  const c = (t) => authClient(srv.base, t);
  assert.equal((await c(good).get('/Patient/pa')).status, 200);
  const [h, p, s] = good.split('.');
  const pubPem = createPublicKey(kit.key).export({ format: 'pem', type: 'spki' });
  const hs = (() => {
    const hh = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: kit.kid }));
    const sig = createHmac('sha256', pubPem).update(`${hh}.${p}`).digest();
    return `${hh}.${p}.${b64u(sig)}`;
  })();
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
  const attacks = {
    'bad signature': `${h}.${p}.${flipped}`,
    'alg none': `${b64u(JSON.stringify({ alg: 'none', kid: kit.kid }))}.${p}.`,
    'HS256 keyed with the public key': hs,
    'unknown kid': kit.token({ scope: 'system/*.rs' }, { header: { kid: 'nope' } }),
    'another key claiming our kid': kit.token({ scope: 'system/*.rs' }, { key: other }),
    'foreign jku': kit.token({ scope: 'system/*.rs' }, { header: { jku: 'http://127.0.0.1:1/jwks' } }),
    'embedded jwk': kit.token({ scope: 'system/*.rs' }, { header: { jwk: { kty: 'EC' } } }),
    'foreign x5u': kit.token({ scope: 'system/*.rs' }, { header: { x5u: 'http://127.0.0.1:1/x' } }),
    'expired beyond the skew': kit.token({ scope: 'system/*.rs', exp: now - 90 }),
    'nbf in the future': kit.token({ scope: 'system/*.rs', nbf: now + 300 }),
    'iat in the future': kit.token({ scope: 'system/*.rs', iat: now + 300 }),
    'no exp': kit.token({ scope: 'system/*.rs', exp: undefined }),
    'wrong aud': kit.token({ scope: 'system/*.rs', aud: 'http://127.0.0.1:1/fhir' }),
    'wrong iss': kit.token({ scope: 'system/*.rs', iss: 'http://evil.example' }),
    'ID token as access token': kit.token({ nonce: 'n', scope: undefined }),
    'patient scope without a patient': kit.token({ scope: 'patient/*.rs' }),
    'truncated': `${h}.${p}`,
    'extra segment': `${good}.xyz`,
    'bad base64url': `${h}.${p}.***`,
    'over 8 KB': kit.token({ scope: 'system/*.rs', pad: 'x'.repeat(9000) }),
    'empty': '',
  };
  for (const [name, tok] of Object.entries(attacks)) {
    seen.push(tok);
    const r = await c(tok).get('/Patient/pa');
    expect401(r, name, tok);
  }
  // within the 60 s skew is still accepted
  const skew = kit.token({ scope: 'system/*.rs', exp: now - 30 });
  assert.equal((await c(skew).get('/Patient/pa')).status, 200);
  // not Bearer
  const basic = await req('GET', `${srv.base}/Patient/pa`, { headers: { Authorization: 'Basic YTpi' } });
  expect401(basic, 'Basic');
});

test('a token in the query string is refused', async () => {
  const t = kit.system('system/*.rs');
  seen.push(t);
  const r = await req('GET', `${srv.base}/Patient/pa?access_token=${t}`);
  expect401(r, 'access_token in the URL', t);
  const r2 = await authClient(srv.base, t).get(`/Patient?access_token=${t}`);
  expect401(r2, 'access_token in the URL with a header too', t);
});

test('failed authentications are audited (DCM 110114), without the token', async () => {
  const bad = kit.token({ scope: 'system/*.rs', aud: 'http://elsewhere/fhir' });
  seen.push(bad);
  expect401(await authClient(srv.base, bad).get('/Patient'), 'wrong aud');
  const po = kit.as(kit.system('system/AuditEvent.rs'));
  let found = null;
  for (let i = 0; i < 40 && !found; i++) {
    const r = await po.get('/AuditEvent?type=110114&_count=100');
    assert.equal(r.status, 200, r.text);
    found = (r.json.entry || []).find((e) => (e.resource.outcomeDesc || '').includes('aud'));
    if (!found) await sleep(100 * SLOW);
  }
  assert.ok(found, 'no AuditEvent for the failed authentication');
  assert.equal(found.resource.outcome, '4');
  assert.ok(!JSON.stringify(found).includes(bad));
});

test('--auth off is refused off loopback and warns on loopback', async () => {
  const d = tempDir();
  const r = await runBevan(['serve', '--listen', '0.0.0.0:0', '--data', d, '--auth', 'off'], { timeoutMs: 20_000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /loopback/);
  const r2 = await runBevan(['serve', '--listen', '0.0.0.0:0', '--data', d], { timeoutMs: 20_000 });
  assert.notEqual(r2.code, 0, 'auth on off loopback needs --base-url');
  assert.match(r2.stderr, /--base-url/);
  const s = await startServer();
  try {
    assert.match(s.stderr, /WARNING: authentication is OFF/);
    assert.equal((await req('GET', `${s.base}/Patient`)).status, 200);
  } finally {
    await s.stop();
  }
});

test('signing key is created 0600 and the JWKS publishes only the public part', async () => {
  const { statSync } = await import('node:fs');
  const st = statSync(join(data, 'keys', 'signing.pem'));
  assert.equal(st.mode & 0o777, 0o600);
  const j = await req('GET', `${srv.origin}/auth/jwks.json`);
  assert.equal(j.json.keys.length, 1);
  assert.equal(j.json.keys[0].kty, 'EC');
  assert.equal(j.json.keys[0].d, undefined);
});

test('SMART configuration', async () => {
  const r = await req('GET', `${srv.base}/.well-known/smart-configuration`);
  assert.equal(r.status, 200);
  assert.equal(r.json.token_endpoint, `${srv.origin}/auth/token`);
  assert.deepEqual(r.json.code_challenge_methods_supported, ['S256']);
  assert.ok(r.json.grant_types_supported.includes('client_credentials'));
  assert.ok(r.json.capabilities.includes('permission-v2'));
});

test('backend services: client_credentials with private_key_jwt; replay, lifetime, aud and scope checks', async () => {
  const keys = globalThis.backendKeys;
  const tokenUrl = `${srv.origin}/auth/token`;
  const now = Math.floor(Date.now() / 1000);
  const claims = (o = {}) => ({ iss: 'backend-1', sub: 'backend-1', aud: tokenUrl, exp: now + 240, jti: randomUUID(), ...o });
  const ask = (assertion, scope = 'system/Patient.rs') => req('POST', tokenUrl, {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ grant_type: 'client_credentials', scope, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion }) });
  const a1 = keys.assertion(claims());
  const r = await ask(a1);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(r.json.scope, 'system/Patient.rs');
  seen.push(r.json.access_token);
  const c = authClient(srv.base, r.json.access_token);
  assert.equal((await c.get('/Patient/pa')).status, 200);
  assert.equal((await c.get('/Observation/o-pa')).status, 403, 'scope is Patient only');
  // replayed jti
  const again = await ask(a1);
  assert.equal(again.status, 401, again.text);
  assert.equal(again.json.error, 'invalid_client');
  // lifetime over 5 minutes, expired, wrong aud, wrong sub, unknown client, other key
  assert.equal((await ask(keys.assertion(claims({ exp: now + 3600 })))).status, 401);
  assert.equal((await ask(keys.assertion(claims({ exp: now - 120 })))).status, 401);
  assert.equal((await ask(keys.assertion(claims({ aud: `${srv.base}` })))).status, 401);
  assert.equal((await ask(keys.assertion(claims({ sub: 'other' })))).status, 401);
  assert.equal((await ask(keys.assertion(claims({ iss: 'nobody', sub: 'nobody' })))).status, 401);
  assert.equal((await ask(clientKeys('ES384').assertion(claims()))).status, 401);
  assert.equal((await ask(keys.assertion(claims(), { alg: 'none' }))).status, 401);
  // scopes beyond the registration are not granted
  const wide = await ask(keys.assertion(claims()), 'system/*.cruds');
  assert.equal(wide.status, 400, wide.text);
  assert.equal(wide.json.error, 'invalid_scope');
  const some = await ask(keys.assertion(claims()), 'system/Observation.c system/Patient.cud');
  assert.equal(some.status, 200, some.text);
  assert.equal(some.json.scope, 'system/Observation.c');
  seen.push(some.json.access_token);
  // unsupported grant, wrong content type
  const bad = await req('POST', tokenUrl, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'grant_type=password' });
  assert.equal(bad.status, 400);
  assert.equal((await req('POST', tokenUrl, { body: { grant_type: 'client_credentials' } })).status, 400);
  // refused client authentications are audited too
  const po = kit.as(kit.system('system/AuditEvent.rs'));
  let found = null;
  for (let i = 0; i < 40 && !found; i++) {
    const a = await po.get('/AuditEvent?type=110114&_count=200');
    found = (a.json.entry || []).find((e) => /replay/.test(e.resource.outcomeDesc || ''));
    if (!found) await sleep(100 * SLOW);
  }
  assert.ok(found, 'the replayed assertion is audited');
});

test('authorization_code with PKCE S256 for bevan-web and a local account; revocation', async () => {
  const { verifier, challenge } = pkce();
  const redirect = `${srv.origin}/web/board.html`;
  const params = { response_type: 'code', client_id: 'bevan-web', redirect_uri: redirect, scope: 'openid fhirUser patient/*.rs',
    state: 's-1', code_challenge: challenge, code_challenge_method: 'S256', aud: kit.base };
  const page = await req('GET', `${srv.origin}/auth/authorize?${form(params)}`);
  assert.equal(page.status, 200, page.text);
  assert.match(page.headers.get('content-type'), /text\/html/);
  assert.match(page.text, /<form method="post"/);
  // refused: plain PKCE, no PKCE, foreign redirect, path tricks, unknown client
  for (const bad of [{ code_challenge_method: 'plain', code_challenge: verifier }, { code_challenge: undefined, code_challenge_method: undefined },
    { redirect_uri: 'http://evil.example/web/board.html' }, { redirect_uri: `${srv.origin}/web/../auth/x.html` },
    { redirect_uri: `${srv.origin}/web/board.html?x=1` }, { client_id: 'nobody' }, { aud: 'http://elsewhere/fhir' }]) {
    const q = { ...params, ...bad };
    for (const k of Object.keys(q)) if (q[k] === undefined) delete q[k];
    const r = await req('GET', `${srv.origin}/auth/authorize?${form(q)}`);
    assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text.slice(0, 200)}`);
  }
  const login = (o) => req('POST', `${srv.origin}/auth/authorize`, {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form({ ...params, ...o }) });
  const wrong = await login({ username: 'alice', password: 'wrong password' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('location'), null);
  const nouser = await login({ username: 'mallory', password: 'whatever123' });
  assert.equal(nouser.status, 401);
  const ok = await fetch(`${srv.origin}/auth/authorize`, { method: 'POST', redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ ...params, username: 'alice', password: 'correct horse battery' }), signal: AbortSignal.timeout(30_000 * SLOW) });
  assert.equal(ok.status, 302);
  const loc = new URL(ok.headers.get('location'));
  assert.equal(`${loc.origin}${loc.pathname}`, redirect);
  assert.equal(loc.searchParams.get('state'), 's-1');
  const code = loc.searchParams.get('code');
  assert.ok(code && code.length >= 40);
  const exchange = (o) => req('POST', `${srv.origin}/auth/token`, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: 'bevan-web', code_verifier: verifier, ...o }) });
  assert.equal((await exchange({ code_verifier: pkce().verifier })).status, 400, 'wrong verifier');
  // a failed exchange used the code up? No: the code is taken once, so get a fresh one for the real exchange
  const ok2 = await fetch(`${srv.origin}/auth/authorize`, { method: 'POST', redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ ...params, username: 'alice', password: 'correct horse battery' }), signal: AbortSignal.timeout(30_000 * SLOW) });
  const code2 = new URL(ok2.headers.get('location')).searchParams.get('code');
  const ex = (o) => req('POST', `${srv.origin}/auth/token`, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ grant_type: 'authorization_code', code: code2, redirect_uri: redirect, client_id: 'bevan-web', code_verifier: verifier, ...o }) });
  assert.equal((await ex({ redirect_uri: `${srv.origin}/web/other.html` })).status, 400, 'redirect_uri must match exactly');
  // each failed exchange consumed code2 too: a third code for the good exchange
  const ok3 = await fetch(`${srv.origin}/auth/authorize`, { method: 'POST', redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ ...params, username: 'alice', password: 'correct horse battery' }), signal: AbortSignal.timeout(30_000 * SLOW) });
  const code3 = new URL(ok3.headers.get('location')).searchParams.get('code');
  const ex3 = () => req('POST', `${srv.origin}/auth/token`, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ grant_type: 'authorization_code', code: code3, redirect_uri: redirect, client_id: 'bevan-web', code_verifier: verifier }) });
  const tr = await ex3();
  assert.equal(tr.status, 200, tr.text);
  assert.equal(tr.headers.get('cache-control'), 'no-store');
  assert.equal(tr.json.patient, 'pa');
  assert.equal(tr.json.scope, 'openid fhirUser patient/*.rs');
  seen.push(tr.json.access_token);
  assert.equal((await ex3()).status, 400, 'a code works once');
  const me = authClient(srv.base, tr.json.access_token);
  assert.equal((await me.get('/Patient/pa')).status, 200);
  assert.equal((await me.get('/Patient/pb')).status, 404);
  // revocation: afterwards the token is refused
  const rv = await req('POST', `${srv.origin}/auth/revoke`, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ token: tr.json.access_token }) });
  assert.equal(rv.status, 200);
  expect401(await me.get('/Patient/pa'), 'revoked token', tr.json.access_token);
});

test('refresh tokens (offline_access): rotated on every use; a reused one ends the sign-in; revocable', async () => {
  const { verifier, challenge } = pkce();
  const redirect = `${srv.origin}/web/board.html`;
  const signIn = async (scope) => {
    const params = { response_type: 'code', client_id: 'bevan-web', redirect_uri: redirect, scope, state: 'r',
      code_challenge: challenge, code_challenge_method: 'S256' };
    const ok = await fetch(`${srv.origin}/auth/authorize`, { method: 'POST', redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: form({ ...params, username: 'alice', password: 'correct horse battery' }), signal: AbortSignal.timeout(30_000 * SLOW) });
    assert.equal(ok.status, 302);
    const code = new URL(ok.headers.get('location')).searchParams.get('code');
    return token({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: 'bevan-web', code_verifier: verifier });
  };
  const token = (o) => req('POST', `${srv.origin}/auth/token`, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form(o) });
  const refresh = (rt, o = {}) => token({ grant_type: 'refresh_token', refresh_token: rt, client_id: 'bevan-web', ...o });

  const sc = await req('GET', `${srv.origin}/.well-known/smart-configuration`);
  assert.ok(sc.json.grant_types_supported.includes('refresh_token'));
  assert.ok(sc.json.capabilities.includes('permission-offline'));

  // without offline_access/online_access: no refresh token
  const plain = await signIn('openid fhirUser patient/*.rs');
  assert.equal(plain.status, 200, plain.text);
  assert.equal(plain.json.refresh_token, undefined);

  const t0 = await signIn('openid fhirUser patient/*.rs offline_access');
  assert.equal(t0.status, 200, t0.text);
  const rt0 = t0.json.refresh_token;
  assert.ok(rt0 && rt0.length >= 40);
  assert.match(t0.json.scope, /offline_access/);
  seen.push(t0.json.access_token, rt0);

  // refresh: a new access token that works, and a new refresh token (rotation)
  const t1 = await refresh(rt0);
  assert.equal(t1.status, 200, t1.text);
  assert.equal(t1.headers.get('cache-control'), 'no-store');
  const rt1 = t1.json.refresh_token;
  assert.ok(rt1 && rt1 !== rt0);
  assert.equal(t1.json.patient, 'pa');
  seen.push(t1.json.access_token, rt1);
  const me = authClient(srv.base, t1.json.access_token);
  assert.equal((await me.get('/Patient/pa')).status, 200);
  assert.equal((await me.get('/Patient/pb')).status, 404);

  // refused: another client, a wider scope, a made-up token
  assert.equal((await refresh(rt1, { client_id: 'backend-1' })).status, 400);
  // (that failed attempt used rt1 up: rotation takes the token before checking the client)
  const t2 = await refresh(rt1);
  assert.equal(t2.status, 400, 'rt1 was taken by the failed attempt');
  assert.equal(t2.json.error, 'invalid_grant');

  // a fresh sign-in: narrowing the scope works, widening does not
  const s1 = await signIn('openid fhirUser patient/*.rs offline_access');
  const narrow = await refresh(s1.json.refresh_token, { scope: 'patient/Patient.rs offline_access' });
  assert.equal(narrow.status, 200, narrow.text);
  assert.equal(narrow.json.scope, 'patient/Patient.rs offline_access');
  const wide = await refresh(narrow.json.refresh_token, { scope: 'patient/*.cruds offline_access' });
  assert.equal(wide.status, 400);
  assert.equal(wide.json.error, 'invalid_scope');
  assert.equal((await refresh('x'.repeat(43))).status, 400);

  // reuse: presenting a rotated token again ends the whole family, the live successor included
  const s2 = await signIn('openid fhirUser patient/*.rs offline_access');
  const a = s2.json.refresh_token;
  const b = await refresh(a);
  assert.equal(b.status, 200, b.text);
  const replay = await refresh(a);
  assert.equal(replay.status, 400, 'a used refresh token is refused');
  const after = await refresh(b.json.refresh_token);
  assert.equal(after.status, 400, 'the successor of a replayed token is revoked too');

  // revocation (RFC 7009) of a refresh token
  const s3 = await signIn('openid fhirUser patient/*.rs online_access');
  assert.ok(s3.json.refresh_token, 'online_access gives a refresh token too');
  const rv = await req('POST', `${srv.origin}/auth/revoke`, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form({ token: s3.json.refresh_token, token_type_hint: 'refresh_token' }) });
  assert.equal(rv.status, 200);
  assert.equal((await refresh(s3.json.refresh_token)).status, 400, 'a revoked refresh token is refused');
  seen.push(s1.json.refresh_token, a, b.json.refresh_token, s3.json.refresh_token);
});

test('bevan token prints a token the server accepts', async () => {
  const r = await runBevan(['token', '--data', data, '--scope', 'patient/*.rs', '--patient', 'pb', '--ttl', '120']);
  assert.equal(r.code, 0, r.stderr);
  const t = r.stdout.trim();
  seen.push(t);
  const c = authClient(srv.base, t);
  assert.equal((await c.get('/Observation/o-pb')).status, 200);
  assert.equal((await c.get('/Observation/o-pa')).status, 404);
  const bad = await runBevan(['token', '--data', tempDir(), '--scope', 'system/*.rs']);
  assert.notEqual(bad.code, 0);
});

test('--trust-issuer: an external identity provider\'s tokens are verified with its JWKS, for its iss only', async () => {
  const { generateKeyPairSync: gen, sign: sg, randomUUID: uuid } = await import('node:crypto');
  const { privateKey, publicKey } = gen('ec', { namedCurve: 'P-256' });
  const d = tempDir('bevan-idp-');
  const kid = 'idp-key-1';
  writeFileSync(join(d, 'idp.jwks'), JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' }] }));
  const ISS = 'https://idp.example.test';
  const s = await startServer({ auth: true, args: ['--trust-issuer', `${ISS}=${join(d, 'idp.jwks')}`] });
  try {
    const k = await authKit(s);
    const mint = (claims) => {
      const now = Math.floor(Date.now() / 1000);
      const h = b64u(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid }));
      const p = b64u(JSON.stringify({ iss: ISS, aud: k.base, sub: 'u1', iat: now, exp: now + 300, jti: uuid(), scope: 'system/*.rs', ...claims }));
      return `${h}.${p}.${b64u(sg('sha256', Buffer.from(`${h}.${p}`), { key: privateKey, dsaEncoding: 'ieee-p1363' }))}`;
    };
    const t = mint({});
    seen.push(t);
    assert.equal((await authClient(s.base, t).get('/Patient')).status, 200);
    // the same key cannot sign for Bevan's own issuer, and another iss is unknown
    expect401(await authClient(s.base, mint({ iss: k.base })).get('/Patient'), 'trusted key, other issuer');
    expect401(await authClient(s.base, mint({ iss: 'https://other.example' })).get('/Patient'), 'unknown issuer');
  } finally {
    await s.stop();
  }
  const bad = await runBevan(['serve', '--listen', '127.0.0.1:0', '--data', join(d, 'x'), '--trust-issuer', `${ISS}=${join(d, 'nope.jwks')}`],
    { timeoutMs: 20_000 });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /nope\.jwks/);
});
