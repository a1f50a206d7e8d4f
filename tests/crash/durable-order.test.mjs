// The durable sync happens before the response is sent, for create, update (If-Match) and
// transaction: the real server runs under strace, and for each request (identified by a unique
// marker in its body) the trace must show, in this order,
//   1. the request read from socket S,
//   2. the last WAL write (pwrite64 on bevan.db-wal) whose bytes contain the marker,
//   3. an fdatasync/fsync of bevan.db-wal that starts after (2) and returns 0 ...
//   4. ... before the first byte of the response is written to socket S.
// Skipped when strace is not installed (scripts/install-deps.sh installs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.BEVAN_BIN || join(resolve(here, '..', '..'), 'build', 'bevan');
const haveStrace = spawnSync('strace', ['-V']).status === 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Parse an `strace -f -y` trace into events {i, pid, call, start, end, ok, fdpath, text}. */
function parseTrace(txt) {
  const lines = txt.split('\n');
  const open = new Map(); // pid -> event awaiting "resumed"
  const ev = [];
  lines.forEach((line, i) => {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) return;
    const pid = m[1];
    const rest = m[2];
    const res = /^<\.\.\. (\w+) resumed>.*\)\s+=\s+(-?\d+)/.exec(rest);
    if (res) {
      const e = open.get(pid);
      if (e && e.call === res[1]) {
        e.end = i;
        e.ok = Number(res[2]) >= 0;
        // a call interrupted by another thread's: its data (a read's bytes) is on this line
        e.text = e.text.replace(/\s*<unfinished \.\.\.>$/, ' ') + rest.replace(/^<\.\.\. \w+ resumed>\s*/, '');
        open.delete(pid);
      }
      return;
    }
    const call = /^(\w+)\((\d+)<([^>]*)>/.exec(rest);
    if (!call) return;
    const e = { i, pid, call: call[1], start: i, end: null, ok: false, fdpath: `${call[2]}<${call[3]}>`, path: call[3], text: rest };
    if (/<unfinished \.\.\.>$/.test(rest)) open.set(pid, e);
    else { const r = /\)\s+=\s+(-?\d+)/.exec(rest); e.end = i; e.ok = !!r && Number(r[1]) >= 0; }
    ev.push(e);
  });
  return ev;
}

function checkOrder(ev, marker) {
  const isSock = (e) => e.path.startsWith('socket:');
  // The request may arrive in several reads, split anywhere (even inside the marker): search the
  // concatenated data read from each socket and take the read that completes the marker.
  const streams = new Map(); // fdpath -> {data, events: [{e, end}]}
  let recv = null;
  for (const e of ev) {
    if (!isSock(e) || !/^(recvfrom|read|recvmsg)$/.test(e.call)) continue;
    const m = /^\w+\(\d+<[^>]*>, (?:\{[^"]*)?"((?:[^"\\]|\\.)*)"/.exec(e.text);
    if (!m) continue;
    const st = streams.get(e.fdpath) || { data: '' };
    st.data += m[1];
    streams.set(e.fdpath, st);
    if (st.data.includes(marker)) { recv = e; break; }
  }
  assert.ok(recv, `${marker}: request not found in the trace`);
  const send = ev.find((e) => e.start > recv.start && e.fdpath === recv.fdpath && /^(sendmsg|sendto|write|writev|send)$/.test(e.call));
  assert.ok(send, `${marker}: no response sent`);
  // The commit: the last WAL write carrying the marker before the response (later commits may
  // rewrite the same page, so writes after the response are not this request's).
  const walWrites = ev.filter((e) => e.start > recv.start && e.start < send.start && /^pwrite/.test(e.call) && e.path.endsWith('-wal') && e.text.includes(marker));
  assert.ok(walWrites.length, `${marker}: no WAL write carrying the marker before the response`);
  const lastWal = walWrites.at(-1);
  const sync = ev.find((e) => /^(fdatasync|fsync)$/.test(e.call) && e.path.endsWith('-wal') && e.start > lastWal.end && e.ok && e.end < send.start);
  assert.ok(sync, `${marker}: no successful WAL sync between the commit (trace line ${lastWal.end + 1}) and the response (line ${send.start + 1})`);
  return { recv: recv.start + 1, walWrite: lastWal.start + 1, sync: sync.start + 1, syncDone: sync.end + 1, send: send.start + 1 };
}

test('WAL fdatasync precedes the response for create, update and transaction (strace)', { skip: !haveStrace && 'strace not installed' }, async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'bevan-strace-'));
  const portFile = join(data, 'port');
  const trace = join(data, 'trace.txt');
  const child = spawn('strace', ['-f', '-y', '-s', '65536', '-o', trace,
    '-e', 'trace=pwrite64,write,writev,sendto,sendmsg,fdatasync,fsync,recvfrom,recvmsg,read',
    BIN, 'serve', '--listen', '127.0.0.1:0', '--port-file', portFile, '--data', join(data, 'db'), '--rate-limit', '0', '--auth', 'off'],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  try {
    let port = 0;
    for (let k = 0; k < 600 && !port; k++) {
      if (existsSync(portFile) && /^\d+$/.test(readFileSync(portFile, 'utf8').trim())) port = Number(readFileSync(portFile, 'utf8').trim());
      else await sleep(50);
    }
    assert.ok(port, `server did not start under strace: ${stderr.slice(-2000)}`);
    const base = `http://127.0.0.1:${port}/fhir`;
    const send = async (method, url, body, headers = {}) => {
      const r = await fetch(url, { method, headers: { 'Content-Type': 'application/fhir+json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
      return { status: r.status, json: await r.json() };
    };
    const c = await send('POST', `${base}/Patient`, { resourceType: 'Patient', name: [{ family: 'MarkCreateQ7' }] });
    assert.equal(c.status, 201);
    const u = await send('PUT', `${base}/Patient/${c.json.id}`, { resourceType: 'Patient', id: c.json.id, name: [{ family: 'MarkUpdateQ7' }] }, { 'If-Match': 'W/"1"' });
    assert.equal(u.status, 200);
    const tx = await send('POST', base, { resourceType: 'Bundle', type: 'transaction', entry: [
      { fullUrl: 'urn:uuid:0b0e0a1c-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family: 'MarkTxQ7' }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Observation', status: 'final', code: { text: 'MarkTxObsQ7' }, subject: { reference: 'urn:uuid:0b0e0a1c-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
    ] });
    assert.equal(tx.status, 200);
    await sleep(300);
    // SIGTERM to the traced server itself (strace would only detach): its pid opens the trace.
    const serverPid = Number(/^(\d+)/.exec(readFileSync(trace, 'utf8'))[1]);
    process.kill(serverPid, 'SIGTERM');
    await new Promise((r) => { const tm = setTimeout(r, 30_000); child.once('exit', () => { clearTimeout(tm); r(); }); });
    const ev = parseTrace(readFileSync(trace, 'utf8'));
    for (const m of ['MarkCreateQ7', 'MarkUpdateQ7', 'MarkTxObsQ7']) t.diagnostic(`${m}: trace lines ${JSON.stringify(checkOrder(ev, m))}`);
  } finally {
    if (child.exitCode === null) {
      try { process.kill(Number(/^(\d+)/.exec(readFileSync(trace, 'utf8'))[1]), 'SIGKILL'); } catch { /* not started */ }
      child.kill('SIGKILL');
    }
    rmSync(data, { recursive: true, force: true });
  }
});
