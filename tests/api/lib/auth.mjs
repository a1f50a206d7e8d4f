// Helpers for the auth tests: tokens signed with the server's own key (read from DATA/keys, as
// `bevan token` does), forged tokens for the attack tests, and a client that sends a bearer token.
import { createPrivateKey, sign, randomUUID, generateKeyPairSync, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { req } from './server.mjs';

export const b64u = (b) => Buffer.from(b).toString('base64url');

/** A client like server.mjs's client(), sending Authorization: Bearer token (and extra headers). */
export function authClient(base, token, extra = {}) {
  const u = (p) => (p.startsWith('http') ? p : `${base}${p.startsWith('/') ? '' : '/'}${p}`);
  const h = (o = {}) => ({ ...o, headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...extra, ...(o.headers || {}) } });
  return {
    base,
    token,
    get: (p, o) => req('GET', u(p), h(o)),
    post: (p, body, o = {}) => req('POST', u(p), h({ ...o, body })),
    put: (p, body, o = {}) => req('PUT', u(p), h({ ...o, body })),
    patch: (p, body, o = {}) => req('PATCH', u(p), h({ ...o, body, headers: { 'Content-Type': 'application/json-patch+json', ...(o.headers || {}) } })),
    del: (p, o) => req('DELETE', u(p), h(o)),
    req: (m, p, o) => req(m, u(p), h(o)),
  };
}

/** Signing kit for one running server (startServer({auth: true})). */
export async function authKit(srv) {
  const key = createPrivateKey(readFileSync(join(srv.data, 'keys', 'signing.pem')));
  const base = readFileSync(join(srv.data, 'keys', 'base-url'), 'utf8').trim();
  const r = await req('GET', `${srv.origin}/auth/jwks.json`);
  const kid = r.json.keys[0].kid;
  const jwt = (header, payload, k = key, alg = 'sha256') => {
    const h = b64u(JSON.stringify(header));
    const p = b64u(JSON.stringify(payload));
    const sig = sign(alg, Buffer.from(`${h}.${p}`), { key: k, dsaEncoding: 'ieee-p1363' });
    return `${h}.${p}.${b64u(sig)}`;
  };
  const token = (claims = {}, { header = {}, key: k } = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return jwt({ alg: 'ES256', typ: 'JWT', kid, ...header },
      { iss: base, aud: base, sub: 'test-user', iat: now, exp: now + 600, jti: randomUUID(), ...claims }, k);
  };
  const kit = {
    base, kid, key, jwt, token,
    /** patient-context token */
    patient: (id, scope = 'patient/*.rs') => token({ scope, patient: id }),
    /** backend system token */
    system: (scope = 'system/*.cruds') => token({ scope, client_id: 'test-system' }),
    /** staff token */
    staff: ({ user = 'Practitioner/p1', role, org, scope = 'user/*.cruds' } = {}) =>
      token({ scope, fhirUser: user, ...(role ? { role } : {}), ...(org ? { organization: org } : {}) }),
    as: (tok, extra) => authClient(`${base}`, tok, extra),
  };
  return kit;
}

/** An EC P-384 or RSA key pair as a JWKS (public) and a signer for client assertions. */
export function clientKeys(kind = 'ES384') {
  const { privateKey, publicKey } = kind === 'RS384'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const jwk = publicKey.export({ format: 'jwk' });
  const kid = `k-${randomUUID()}`;
  return {
    jwks: { keys: [{ ...jwk, kid, alg: kind, use: 'sig' }] },
    kid,
    assertion(claims, header = {}) {
      const h = b64u(JSON.stringify({ alg: kind, typ: 'JWT', kid, ...header }));
      const p = b64u(JSON.stringify(claims));
      const sig = sign('sha384', Buffer.from(`${h}.${p}`), kind === 'RS384' ? privateKey : { key: privateKey, dsaEncoding: 'ieee-p1363' });
      return `${h}.${p}.${b64u(sig)}`;
    },
  };
}

export function pkce() {
  const verifier = b64u(randomBytes(32));
  return { verifier, challenge: b64u(createHash('sha256').update(verifier).digest()) };
}

export const form = (o) => new URLSearchParams(o).toString();
