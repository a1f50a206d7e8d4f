// Transport: TLS (1.2+ only), security headers, CORS allowlist, per-client rate limits.
// The certificate is made at test time with the openssl CLI (nothing committed).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { startServer, tempDir, req, assertOutcome } from './lib/server.mjs';

const servers = [];
after(async () => { for (const s of servers) await s.stop(); });

function makeCert() {
  const dir = tempDir('bevan-tls-');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore', timeout: 30_000 });
  return { cert, key, ca: readFileSync(cert) };
}

function httpsGet(port, path, ca, extra = {}) {
  return new Promise((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port, path, method: 'GET', ca, timeout: 10_000,
      headers: { Accept: 'application/fhir+json' }, ...extra }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end();
  });
}

function tlsHandshake(port, ca, opts) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: undefined, timeout: 10_000, ...opts }, () => {
      const v = s.getProtocol();
      s.end();
      resolve({ ok: true, version: v });
    });
    s.on('error', (e) => resolve({ ok: false, error: e.code || e.message }));
    s.on('timeout', () => { s.destroy(); resolve({ ok: false, error: 'timeout' }); });
  });
}

test('TLS: HTTPS serves the API, advertises https links, and refuses TLS 1.1 and plain HTTP', async () => {
  const { cert, key, ca } = makeCert();
  const srv = await startServer({ args: ['--tls-cert', cert, '--tls-key', key] });
  servers.push(srv);
  const r = await httpsGet(srv.port, '/fhir/metadata', ca);
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).resourceType, 'CapabilityStatement');
  assert.equal(r.headers['strict-transport-security'], 'max-age=31536000');

  const modern = await tlsHandshake(srv.port, ca, { minVersion: 'TLSv1.2' });
  assert.ok(modern.ok, `TLS 1.2+ handshake failed: ${modern.error}`);
  assert.match(modern.version, /^TLSv1\.[23]$/);
  const old = await tlsHandshake(srv.port, ca, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
  assert.equal(old.ok, false, `a TLS 1.1 handshake must fail (got ${old.version})`);

  // A plain-HTTP request on the TLS port gets no HTTP answer.
  const plain = await req('GET', `http://127.0.0.1:${srv.port}/fhir/metadata`, { timeoutMs: 5000 }).catch((e) => e);
  assert.ok(plain instanceof Error || plain.status !== 200, 'plain HTTP must not be served on the TLS port');
});

test('TLS: a certificate without its key (or a bad file) stops the server at start with a message', async () => {
  const { cert } = makeCert();
  await assert.rejects(startServer({ args: ['--tls-cert', cert] }), /exited early|TLS/);
  await assert.rejects(startServer({ args: ['--tls-cert', cert, '--tls-key', '/nonexistent/key.pem'] }),
    /exited early|TLS/);
});

test('security headers on FHIR responses and on errors', async () => {
  const srv = await startServer();
  servers.push(srv);
  for (const path of ['/fhir/metadata', '/fhir/Patient/does-not-exist', '/fhir/NoSuchType']) {
    const r = await req('GET', srv.origin + path);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
    assert.equal(r.headers.get('cache-control'), 'no-store', path);
    assert.equal(r.headers.get('x-frame-options'), 'DENY', path);
    assert.match(r.headers.get('content-security-policy'), /default-src 'none'/, path);
    assert.equal(r.headers.get('strict-transport-security'), null, 'no HSTS over plain HTTP');
  }
});

test('CORS: only configured origins get Access-Control headers; preflights answered before the API', async () => {
  const good = 'https://app.example.org';
  const srv = await startServer({ args: ['--cors-origin', good] });
  servers.push(srv);
  const pre = await req('OPTIONS', `${srv.base}/Patient`, { headers: { Origin: good,
    'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), good);
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
  assert.match(pre.headers.get('access-control-allow-headers'), /Authorization/);

  const bad = await req('OPTIONS', `${srv.base}/Patient`, { headers: { Origin: 'https://evil.example',
    'Access-Control-Request-Method': 'GET' } });
  assertOutcome(bad, 403, 'preflight from an unknown origin');
  assert.equal(bad.headers.get('access-control-allow-origin'), null);

  const g = await req('GET', `${srv.base}/metadata`, { headers: { Origin: good } });
  assert.equal(g.status, 200);
  assert.equal(g.headers.get('access-control-allow-origin'), good);
  assert.match(g.headers.get('access-control-expose-headers'), /ETag/);
  const e = await req('GET', `${srv.base}/metadata`, { headers: { Origin: 'https://evil.example' } });
  assert.equal(e.status, 200);
  assert.equal(e.headers.get('access-control-allow-origin'), null, 'no CORS grant for an unknown origin');
});

test('rate limit: over the per-client budget answers 429 with Retry-After and an OperationOutcome', async () => {
  const srv = await startServer({ args: ['--rate-limit', '2/5', '--rate-limit-loopback'] });
  servers.push(srv);
  const statuses = [];
  let limited = null;
  for (let i = 0; i < 12 && !limited; i++) {
    const r = await req('GET', `${srv.base}/metadata`);
    statuses.push(r.status);
    if (r.status === 429) limited = r;
  }
  assert.ok(limited, `no 429 within 12 back-to-back requests at 2/s burst 5: ${statuses}`);
  assert.ok(statuses.filter((s) => s === 200).length >= 5, `the burst of 5 was served first: ${statuses}`);
  assertOutcome(limited, 429, 'throttled');
  const ra = Number(limited.headers.get('retry-after'));
  assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 5, `Retry-After ${limited.headers.get('retry-after')}`);
});

test('rate limit: loopback clients are exempt by default (local tools and benchmarks)', async () => {
  const srv = await startServer({ args: ['--rate-limit', '1/1'] });
  servers.push(srv);
  for (let i = 0; i < 10; i++) assert.equal((await req('GET', `${srv.base}/metadata`)).status, 200);
});
