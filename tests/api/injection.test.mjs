// Injection and hostile input (reliability-security.md §E 23, 25, 26 and §F 28–30): SQL
// metacharacters in every part of a search (parameter names, values, modifiers, prefixes, _sort,
// _elements, _count, _id), in id path segments and in conditional URLs; log injection; HTTP framing
// and methods. Pass criteria: never a 5xx; a 200 answers exactly the literal match (a resource
// whose stored value *is* the hostile string is found, nothing else is); errors are
// OperationOutcomes without SQL text; CR/LF and escapes never reach the log raw.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, client } from './lib/server.mjs';

const PAYLOADS = ["' OR 1=1--", '" OR ""="', "'; DROP TABLE resources;--", '%00', '\\', "\u2019 OR \u20181\u2019=\u20181",
  '1) UNION SELECT * FROM sqlite_master--', '*', '%', '_', "x' AND randomblob(1000000000)--"];

let srv;
let c;
const ids = {};
before(async () => {
  srv = await startServer();
  c = client(srv.base);
  for (const [i, p] of PAYLOADS.entries()) {
    const r = await c.post('/Patient', { resourceType: 'Patient', name: [{ family: `Inj${i}${p}` }],
      identifier: [{ system: 'http://inj.example', value: p }] });
    assert.equal(r.status, 201, r.text);
    ids[p] = r.json.id;
  }
  const plain = await c.post('/Patient', { resourceType: 'Patient', name: [{ family: 'Plain' }], birthDate: '1970-01-01' });
  ids.plain = plain.json.id;
});
after(async () => { if (srv) { await srv.stop(); srv.kill(); } });

const q = encodeURIComponent;
// (the payloads themselves are echoed in diagnostics and self links: look for the engine's words)
const noSqlText = (t) => assert.ok(!/SQL logic error|syntax error|no such (table|column)|sqlite3_|SQLITE_[A-Z]|near "/.test(t),
  `SQL text leaked: ${t.slice(0, 300)}`);
const ok200or4xx = (r, what) => {
  assert.ok(r.status === 200 || (r.status >= 400 && r.status < 500), `${what}: ${r.status} ${r.text.slice(0, 300)}`);
  noSqlText(r.text);
  if (r.status >= 400) assert.equal(r.json?.resourceType, 'OperationOutcome', `${what}: ${r.text.slice(0, 200)}`);
};
const matchIds = (r) => (r.json.entry || []).filter((e) => e.search?.mode !== 'outcome').map((e) => e.resource.id).sort();

test('search values: a 200 is exactly the literal match, never more rows', async () => {
  for (const [i, p] of PAYLOADS.entries()) {
    const byIdent = await c.get(`/Patient?identifier=${q(`http://inj.example|${p}`)}`);
    ok200or4xx(byIdent, `identifier ${p}`);
    if (byIdent.status === 200) assert.deepEqual(matchIds(byIdent), [ids[p]], `identifier=${p}`);
    const byName = await c.get(`/Patient?family:exact=${q(`Inj${i}${p}`)}`);
    ok200or4xx(byName, `family:exact ${p}`);
    if (byName.status === 200) assert.deepEqual(matchIds(byName), [ids[p]], `family:exact=${p}`);
    for (const path of [`/Patient?family=${q(p)}`, `/Patient?name:contains=${q(p)}`, `/Patient?_id=${q(p)}`,
      `/Patient?birthdate=${q(p)}`, `/Patient?birthdate=ge${q(p)}`, `/Observation?subject=${q(p)}`,
      `/Observation?code=${q(p)}`, `/Observation?value-quantity=${q(p)}`, `/Patient?general-practitioner.name=${q(p)}`,
      `/Patient?_has:Observation:subject:code=${q(p)}`]) {
      const r = await c.get(path);
      ok200or4xx(r, path);
      // none of the stored names or values begins with the bare payload: a 200 finds nothing
      if (r.status === 200 && !path.includes('name:contains')) assert.deepEqual(matchIds(r), [], path);
    }
  }
});

test('parameter names, modifiers, prefixes, _sort, _elements, _count: 400 or a literal answer, never 5xx', async () => {
  for (const p of PAYLOADS) {
    for (const path of [`/Patient?${q(p)}=1`, `/Patient?family:${q(p)}=x`, `/Patient?birthdate=${q(p)}1970`,
      `/Patient?_sort=${q(p)}`, `/Patient?_sort=-${q(p)}`, `/Patient?_elements=${q(p)}`, `/Patient?_count=${q(p)}`,
      `/Patient?_include=${q(p)}`, `/Patient?_revinclude=Observation:${q(p)}`, `/Patient?_summary=${q(p)}`,
      `/Patient?_total=${q(p)}`, `/Patient?_cursor=${q(p)}`, `/${q(p)}?_id=1`]) {
      const r = await c.get(path);
      ok200or4xx(r, path);
    }
  }
  // lenient handling ignores unknown names; the answer is then the unfiltered search
  const all = await c.get('/Patient?_count=1000&_summary=count');
  const lenient = await c.get(`/Patient?${q("' OR 1=1--")}=1&_summary=count`, { headers: { Prefer: 'handling=lenient' } });
  assert.equal(lenient.status, 200);
  assert.equal(lenient.json.total, all.json.total);
});

test('ids and paths: hostile ids give 400/404 with an OperationOutcome; conditional URLs never 5xx', async () => {
  for (const p of [...PAYLOADS, '../Patient', '%2e%2e', '..%2f..%2fetc%2fpasswd', 'a'.repeat(65), 'a b']) {
    for (const path of [`/Patient/${q(p)}`, `/Patient/${q(p)}/_history`, `/Patient/${q(p)}/_history/1`,
      `/Patient/${q(p)}/$everything`]) {
      const r = await c.get(path);
      assert.ok([400, 404].includes(r.status), `${path}: ${r.status} ${r.text.slice(0, 200)}`);
      noSqlText(r.text);
      assert.equal(r.json?.resourceType, 'OperationOutcome', path);
    }
    const put = await c.put(`/Patient/${q(p)}`, { resourceType: 'Patient', id: p });
    assert.ok(put.status >= 400 && put.status < 500, `PUT ${p}: ${put.status}`);
    const cond = await c.post('/Patient', { resourceType: 'Patient' }, { headers: { 'If-None-Exist': `identifier=${q(p)}` } });
    assert.ok([200, 201, 400, 412].includes(cond.status), `If-None-Exist ${p}: ${cond.status} ${cond.text.slice(0, 200)}`);
    const cdel = await c.del(`/Patient?identifier=${q(`http://nowhere.example|${p}`)}`);
    assert.ok(cdel.status < 500, `conditional delete ${p}: ${cdel.status}`);
  }
  // no store damage: every seeded record still reads back
  for (const id of Object.values(ids)) assert.equal((await c.get(`/Patient/${id}`)).status, 200);
});

test('log injection: CR/LF and ANSI escapes in requests never reach the log raw', async () => {
  const evil = 'x\r\n2026-01-01T00:00:00.000Z error FORGED LINE\u001b[31mred';
  await c.get(`/Patient?family:nope=${q(evil)}`);
  await c.get(`/Patient/${q(evil)}`);
  await c.post('/Patient', { resourceType: 'Patient', name: [{ family: evil }], bogus: evil });
  assert.ok(!srv.stderr.includes('\u001b'), 'an ANSI escape reached the log');
  assert.ok(!/^2026-01-01T00:00:00.000Z error FORGED LINE/m.test(srv.stderr), 'a forged log line');
});

/** Send raw bytes; resolve with everything the server answered before closing (bounded). */
function raw(bytes, ms = 3000) {
  return new Promise((res) => {
    const s = net.connect(srv.port, '127.0.0.1');
    let out = '';
    const done = () => { clearTimeout(t); s.destroy(); res(out); };
    const t = setTimeout(done, ms);
    s.on('data', (d) => { out += d; });
    s.on('end', done);
    s.on('error', done);
    s.write(bytes);
  });
}
const statuses = (text) => [...text.matchAll(/^HTTP\/1\.[01] (\d{3})/gm)].map((m) => Number(m[1]));

test('framing: TE+CL, duplicate CL, bare LF tricks never yield a smuggled second request', async () => {
  const smuggle = 'GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n';
  const cases = [
    `POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggle}`,
    `POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}${smuggle}`,
    `POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n${smuggle}`,
  ];
  for (const bytes of cases) {
    const got = statuses(await raw(bytes));
    assert.ok(got.length <= 1 || got.slice(1).every((s) => s >= 400), `two answers for one request: ${got}`);
    assert.ok(got.every((s) => s < 500), `5xx: ${got}`);
  }
});

test('methods: TRACE and unknown methods get 405 (or 400/501) with no echo; errors carry no banners', async () => {
  for (const m of ['TRACE', 'FOO', 'CONNECT']) {
    const text = await raw(`${m} /fhir/Patient HTTP/1.1\r\nHost: x\r\nX-Secret: echo-me\r\nConnection: close\r\n\r\n`);
    const [s] = statuses(text);
    assert.ok([400, 405, 501].includes(s), `${m}: ${s}`);
    assert.ok(!text.includes('echo-me'), `${m} echoed the request`);
  }
  const r = await c.get('/Nope');
  assert.ok(r.status >= 400 && r.status < 500);
  noSqlText(r.text);
  assert.ok(!/\/work\/|\.c:\d+|libmicrohttpd\/|SQLite version/i.test(r.text), r.text);
});
