// serve: port file, SIGTERM/SIGINT exit 0 after in-flight requests, durability across restart,
// the other commands' --help and exit codes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, readFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import { startServer, client, runBevan, tempDir, TEST_SYSTEM, req } from './lib/server.mjs';

let root;
before(() => { root = tempDir('bevan-life-'); });
after(() => { if (root) rmSync(root, { recursive: true, force: true }); });

test('restart on the same data folder keeps everything (reads, versions, deletions, search)', async () => {
  const data = join(root, 'restart');
  const s1 = await startServer({ data });
  const c1 = client(s1.base);
  const made = [];
  const texts = [];
  let kept;
  let gone;
  let obs;
  try {
    for (let i = 0; i < 10; i++) {
      const r = await c1.post('/Patient', { resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value: `r${i}` }] });
      assert.equal(r.status, 201);
      made.push(r.json);
      texts.push(r.text);
    }
    kept = await c1.put(`/Patient/${made[0].id}`, { ...made[0], gender: 'female' });
    assert.equal(kept.status, 200);
    gone = made[1];
    assert.equal((await c1.del(`/Patient/${gone.id}`)).status, 204);
    obs = await c1.post('/Observation', '{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":1.50}}');
    assert.equal(obs.status, 201);
  } finally {
    await s1.stop();
    s1.kill();
  }
  const chk = await runBevan(['check', '--data', data]);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
  assert.equal(chk.sanitizer, null, chk.stderr);

  const s2 = await startServer({ data });
  try {
    assert.notEqual(s2.port, 0);
    const c2 = client(s2.base);
    const k = await c2.get(`/Patient/${made[0].id}`);
    assert.equal(k.text, kept.text, 'current version byte-identical after restart');
    assert.equal(k.headers.get('etag'), 'W/"2"');
    assert.equal((await c2.get(`/Patient/${made[0].id}/_history/1`)).text, texts[0], 'old version byte-identical');
    assert.equal((await c2.get(`/Patient/${gone.id}`)).status, 410);
    assert.equal((await c2.get(`/Observation/${obs.json.id}`)).text, obs.text);
    assert.equal(await c2.count('/Patient'), 9);
    assert.equal(await c2.count(`/Patient?identifier=${encodeURIComponent(`${TEST_SYSTEM}|r5`)}`), 1);
    assert.equal(await c2.historyTotal(), 13);
    for (const p of made.slice(2)) assert.equal((await c2.get(`/Patient/${p.id}`)).status, 200);
    // writes continue after a restart
    const more = await c2.put(`/Patient/${made[0].id}`, { ...made[0], gender: 'male' });
    assert.equal(more.json.meta.versionId, '3');
  } finally {
    await s2.stop();
    s2.kill();
  }
});

test('SIGTERM during a burst of writes: exit 0, and every acknowledged write survives', async () => {
  const data = join(root, 'burst');
  const s = await startServer({ data });
  const c = client(s.base);
  const results = [];
  const sends = Array.from({ length: 60 }, (_, i) =>
    c.post('/Patient', { resourceType: 'Patient', identifier: [{ system: TEST_SYSTEM, value: `b${i}` }] }, { timeoutMs: 20_000 })
      .then((r) => results.push(r), (e) => results.push({ error: String(e) })));
  await new Promise((r) => setTimeout(r, 30));
  await s.stop(); // SIGTERM; asserts exit 0 and no sanitizer report
  await Promise.all(sends);
  s.kill();
  const acked = results.filter((r) => r.status === 201);
  for (const r of results) assert.ok(r.error || r.status === 201, `a request answered ${r.status}: ${r.text?.slice(0, 200)}`);
  const s2 = await startServer({ data });
  try {
    const c2 = client(s2.base);
    for (const r of acked) {
      const back = await c2.get(`/Patient/${r.json.id}`);
      assert.equal(back.status, 200, 'an acknowledged create is durable');
      assert.equal(back.text, r.text);
    }
    assert.ok(await c2.count('/Patient') >= acked.length);
  } finally {
    await s2.stop();
    s2.kill();
  }
});

test('SIGTERM while kept-alive connections keep writing: exit 0 every time (no request left suspended)', async () => {
  // Regression: a write arriving on a kept-alive connection after the workers stopped was suspended
  // and never resumed, and libmicrohttpd aborted in MHD_stop_daemon.
  for (let round = 0; round < 8; round++) {
    const s = await startServer();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const port = new URL(s.base).port;
    const post = () => new Promise((res) => {
      const rq = http.request({ host: '127.0.0.1', port, path: '/fhir/Patient', method: 'POST', agent,
        headers: { 'content-type': 'application/fhir+json' }, timeout: 20_000 }, (r) => { r.resume(); r.on('end', res); });
      rq.on('error', res);
      rq.on('timeout', () => rq.destroy());
      rq.end('{"resourceType":"Patient"}');
    });
    let stop = false;
    const loops = Array.from({ length: 8 }, async () => { for (let i = 0; i < 2000 && !stop; i++) await post(); });
    await new Promise((r) => setTimeout(r, 40 + round * 15));
    try {
      await s.stop(); // asserts exit 0, no signal, no sanitizer report
    } finally {
      stop = true;
      await Promise.all(loops);
      agent.destroy();
      s.kill();
    }
  }
});

test('SIGINT also stops the server cleanly', async () => {
  const s = await startServer();
  assert.equal((await req('GET', `${s.origin}/healthz`)).status, 200);
  s.child.kill('SIGINT');
  const code = await new Promise((res) => {
    const t = setTimeout(() => res('timeout'), 20_000);
    s.child.once('exit', (c) => { clearTimeout(t); res(c); });
  });
  assert.equal(code, 0);
  s.kill();
});

test('the port file holds the bound port and nothing else', async () => {
  const s = await startServer();
  try {
    assert.ok(s.port > 0 && s.port < 65536);
    assert.equal((await req('GET', `${s.origin}/healthz`)).status, 200);
    assert.equal(readFileSync(s.portFile, 'utf8'), `${s.port}\n`);
    assert.ok(!existsSync(`${s.portFile}.tmp`), 'the temporary file was renamed');
  } finally { await s.stop(); s.kill(); }
});

test('a busy port is reported, not ignored', async () => {
  const s = await startServer();
  try {
    const r = await runBevan(['serve', '--listen', `127.0.0.1:${s.port}`, '--data', join(root, 'busy')], { timeoutMs: 20_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot listen/);
  } finally { await s.stop(); s.kill(); }
});

test('bevan import of NDJSON: PUT for lines with an id, POST otherwise; a bad line imports nothing', async () => {
  const dir = join(root, 'ndjson');
  mkdirSync(dir);
  const good = join(dir, 'good.ndjson');
  const lines = [
    { resourceType: 'Patient', id: 'nd-1', gender: 'female' },
    { resourceType: 'Patient', gender: 'male' },
    { resourceType: 'Observation', id: 'nd-obs', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/nd-1' } },
  ];
  writeFileSync(good, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n\n`);
  const data = join(dir, 'data');
  const imp = await runBevan(['import', '--data', data, good]);
  assert.equal(imp.sanitizer, null, imp.stderr);
  assert.equal(imp.code, 0, imp.stdout + imp.stderr);
  assert.match(imp.stdout, /3 resources stored/);
  const bad = join(dir, 'bad.ndjson');
  writeFileSync(bad, `${JSON.stringify({ resourceType: 'Patient', id: 'nd-2' })}\n{"resourceType":"Patient",\n`);
  const imp2 = await runBevan(['import', '--data', data, bad]);
  assert.notEqual(imp2.code, 0, 'a malformed line fails the import');
  const s = await startServer({ data });
  try {
    const c = client(s.base);
    assert.equal((await c.get('/Patient/nd-1')).json.gender, 'female');
    assert.equal((await c.get('/Observation/nd-obs')).json.subject.reference, 'Patient/nd-1');
    assert.equal(await c.count('/Patient'), 2);
    assert.equal((await c.get('/Patient/nd-2')).status, 404, 'nothing of the failed file is stored');
  } finally { await s.stop(); s.kill(); }
});

test('--help on every command; unknown commands and options fail', async () => {
  for (const cmd of ['serve', 'import', 'check', 'demo']) {
    const r = await runBevan([cmd, '--help']);
    assert.equal(r.code, 0, `${cmd} --help`);
    assert.match(r.stdout, new RegExp(`usage: bevan ${cmd}`));
  }
  assert.equal((await runBevan(['--help'])).code, 0);
  assert.notEqual((await runBevan(['frobnicate'])).code, 0);
  assert.notEqual((await runBevan(['serve', '--nope'])).code, 0);
  for (const opt of ['--writer-cache-mb', '--reader-cache-mb']) {
    for (const v of ['0', '4097', 'many']) {
      const r = await runBevan(['serve', opt, v, '--data', join(root, 'cache')]);
      assert.notEqual(r.code, 0, `${opt} ${v} refused`);
      assert.match(r.stderr, new RegExp(`bad option '${opt}'`));
    }
  }
  const chk = await runBevan(['check', '--data', join(root, 'does-not-exist')]);
  assert.notEqual(chk.code, 0, 'check of a missing folder fails');
  const imp = await runBevan(['import', '--data', join(root, 'imp'), join(root, 'no-such-file.json')]);
  assert.notEqual(imp.code, 0, 'import of a missing file fails');
});
