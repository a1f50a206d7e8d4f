// A tiny RFC 6455 client for the tests (node 20 has no WebSocket client): text messages,
// fragment reassembly, answers pings; raw() sends hand-made frames for the protocol tests.
// Only 127.0.0.1 is contacted; every wait is bounded.
import net from 'node:net';
import { randomBytes, createHash } from 'node:crypto';
import assert from 'node:assert/strict';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A client frame (masked unless mask === false). */
export function frame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, rsv = 0 } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = data.length;
  let head;
  if (len < 126) { head = Buffer.alloc(2); head[1] = len; }
  else if (len < 65536) { head = Buffer.alloc(4); head[1] = 126; head.writeUInt16BE(len, 2); }
  else { head = Buffer.alloc(10); head[1] = 127; head.writeBigUInt64BE(BigInt(len), 2); }
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

/**
 * Connect to ws://127.0.0.1:port/path. Resolves a client {send(text), raw(buf), next(ms), messages,
 * closed (promise of {code}), close()} or rejects with the HTTP status line when not upgraded.
 */
export function connectWs(origin, path = '/ws', { headers = {}, timeoutMs = 5000 } = {}) {
  const u = new URL(origin);
  assert.equal(u.hostname, '127.0.0.1');
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: Number(u.port) });
    const key = randomBytes(16).toString('base64');
    const expect = createHash('sha1').update(key + GUID).digest('base64');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const messages = [];
    const waiters = [];
    let closeCode = null;
    let closedResolve;
    const closed = new Promise((r) => { closedResolve = r; });
    let fragments = [];
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('websocket handshake timed out')); }, timeoutMs);
    const deliver = (m) => {
      const w = waiters.shift();
      if (w) w.resolve(m); else messages.push(m);
    };
    const client = {
      messages,
      closed,
      get closeCode() { return closeCode; },
      send(text) { sock.write(frame(1, Buffer.from(text))); },
      raw(b) { sock.write(b); },
      /** Next text message (bounded wait); rejects on timeout. */
      next(ms = 5000) {
        if (messages.length) return Promise.resolve(messages.shift());
        return new Promise((res, rej) => {
          const w = { resolve: (m) => { clearTimeout(t); res(m); } };
          const t = setTimeout(() => { const i = waiters.indexOf(w); if (i >= 0) waiters.splice(i, 1); rej(new Error(`no websocket message within ${ms} ms`)); }, ms);
          waiters.push(w);
        });
      },
      close(code = 1000) {
        const p = Buffer.alloc(2); p.writeUInt16BE(code);
        try { sock.write(frame(8, p)); } catch { /* gone */ }
        setTimeout(() => sock.destroy(), 200);
      },
      destroy() { sock.destroy(); },
    };
    const parse = () => {
      for (;;) {
        if (buf.length < 2) return;
        const fin = (buf[0] & 0x80) !== 0;
        const op = buf[0] & 0x0f;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (op === 9) { sock.write(frame(10, payload)); continue; }
        if (op === 10) continue;
        if (op === 8) {
          closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
          try { sock.write(frame(8, payload.subarray(0, 2))); } catch { /* gone */ }
          sock.end();
          continue;
        }
        if (op === 1 || op === 0) {
          fragments.push(payload);
          if (fin) { deliver(Buffer.concat(fragments).toString('utf8')); fragments = []; }
        }
      }
    };
    sock.on('connect', () => {
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      sock.write(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
        + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`);
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.subarray(0, i).toString('latin1');
        buf = buf.subarray(i + 4);
        clearTimeout(timer);
        const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
        if (!m || m[1] !== '101') {
          const err = new Error(`not upgraded: ${head.split('\r\n')[0]}`);
          err.status = m ? Number(m[1]) : 0;
          err.head = head;
          sock.destroy();
          reject(err);
          return;
        }
        const acc = /\r\nsec-websocket-accept: *([^\r]+)/i.exec(head);
        if (!acc || acc[1].trim() !== expect) { sock.destroy(); reject(new Error(`bad Sec-WebSocket-Accept in ${head}`)); return; }
        upgraded = true;
        resolve(client);
      }
      parse();
    });
    sock.on('close', () => { clearTimeout(timer); closedResolve({ code: closeCode }); });
    sock.on('error', () => { /* close follows */ });
  });
}
