/* bevan serve's auth options, and `bevan token`, `bevan client add`, `bevan user add`. */
#include "auth_cmd.h"
#include "bevan/cli.h"
#include "bevan/fhir.h"
#include "bevan/json.h"
#include "bevan/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool cli_auth_option(cli_auth_opts *o, int argc, char **argv, int *i, bool *bad)
{
    const char *a = argv[*i];
    const char *next = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!next) return false;
    if (strcmp(a, "--auth") == 0) {
        if (strcmp(next, "off") == 0) o->off = true;
        else if (strcmp(next, "on") == 0) o->off = false;
        else *bad = true;
    } else if (strcmp(a, "--base-url") == 0) {
        o->base_url = next;
    } else if (strcmp(a, "--jwks") == 0) {
        if (o->n_jwks == 8) *bad = true;
        else o->jwks[o->n_jwks++] = next;
    } else if (strcmp(a, "--trust-issuer") == 0) {
        if (o->n_trust == 8 || !strchr(next, '=')) *bad = true;
        else o->trust[o->n_trust++] = next;
    } else if (strcmp(a, "--policy") == 0) {
        o->policy = next;
    } else {
        return false;
    }
    (*i)++;
    return true;
}

static bool loopback(const char *listen)
{
    return bv_starts_with(listen, "127.") || bv_starts_with(listen, "localhost:") || bv_starts_with(listen, "[::1]:") ||
           bv_starts_with(listen, "::1:");
}

int cli_auth_setup(const cli_auth_opts *o, bv_api *api, const char *data, const char *listen, bv_auth **out)
{
    *out = NULL;
    if (o->off) {
        if (!loopback(listen)) {
            fprintf(stderr, "bevan: --auth off is allowed only when listening on loopback (127.0.0.1, ::1)\n");
            return 1;
        }
        fprintf(stderr, "bevan: WARNING: authentication is OFF (--auth off): anyone who can reach %s can read and "
                        "change every record. For development on this machine only.\n",
                listen);
        return 0;
    }
    if (!o->base_url && !loopback(listen)) {
        fprintf(stderr, "bevan: give --base-url (the FHIR base URL clients use, e.g. https://care.example.org/fhir): "
                        "access tokens must name it as their audience\n");
        return 1;
    }
    char kd[4096], pol[4096];
    snprintf(kd, sizeof kd, "%s/keys", data);
    bv_auth_options ao = {.key_dir = kd, .issuer = o->base_url, .audience = o->base_url, .jwks_files = o->jwks,
                          .n_jwks_files = o->n_jwks, .trust = o->trust, .n_trust = o->n_trust};
    char err[512];
    bv_auth *au;
    if (bv_auth_open(&ao, &au, err, sizeof err)) {
        fprintf(stderr, "bevan: auth: %s\n", err);
        return 1;
    }
    const char *policy = o->policy;
    snprintf(pol, sizeof pol, "%s/policy.json", data);
    struct stat st;
    if (!policy && stat(pol, &st) == 0) policy = pol;
    if (bv_api_enable_auth(api, au, policy, err, sizeof err)) {
        fprintf(stderr, "bevan: policy: %s\n", err);
        bv_auth_free(au);
        return 1;
    }
    *out = au;
    return 0;
}

void cli_auth_ready(const cli_auth_opts *o, bv_auth *au, const char *data, const char *host, int port, bool tls)
{
    if (!au) return;
    char base[1024];
    if (o->base_url) snprintf(base, sizeof base, "%s", o->base_url);
    else snprintf(base, sizeof base, "%s://%s:%d/fhir", tls ? "https" : "http", host, port);
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/') base[--bl] = '\0';
    bv_auth_set_base(au, base);
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/keys/base-url", data);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", base) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        fprintf(stderr, "bevan: cannot write %s (bevan token will need --aud)\n", path);
    bv_log(BV_LOG_INFO, "auth on: tokens must carry aud %s (bevan token --data %s --scope ... prints one)", base, data);
}

/* ---------------------------------------------------------------- bevan token */
static const char token_help[] =
    "usage: bevan token --data DIR --scope \"SCOPES\" [--patient ID] [--user Practitioner/ID]\n"
    "                   [--role ROLE] [--org Organization/ID] [--ttl SECONDS] [--aud URL] [--sub S]\n"
    "Prints an access token signed with the server's own key (DIR/keys/signing.pem), for\n"
    "development and tests. The audience is the running server's base URL (DIR/keys/base-url,\n"
    "written at start) unless --aud is given. --ttl defaults to 3600 (max 86400).\n";

static char *read_base(const char *data)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/keys/base-url", data);
    size_t len;
    char *t = bv_read_text_file(path, 4096, &len);
    if (!t) return NULL;
    while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ')) t[--len] = '\0';
    return t;
}

int bv_cmd_token(int argc, char **argv)
{
    const char *data = "./data", *scope = NULL, *patient = NULL, *user = NULL, *role = NULL, *org = NULL,
               *aud = NULL, *sub = NULL;
    uint64_t ttl = 3600;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { fputs(token_help, stdout); return 0; }
        if (!n) { fprintf(stderr, "bevan token: bad option '%s'\n%s", a, token_help); return 2; }
        if (strcmp(a, "--data") == 0) data = n;
        else if (strcmp(a, "--scope") == 0) scope = n;
        else if (strcmp(a, "--patient") == 0) patient = n;
        else if (strcmp(a, "--user") == 0) user = n;
        else if (strcmp(a, "--role") == 0) role = n;
        else if (strcmp(a, "--org") == 0) org = n;
        else if (strcmp(a, "--aud") == 0) aud = n;
        else if (strcmp(a, "--sub") == 0) sub = n;
        else if (strcmp(a, "--ttl") == 0) {
            if (bv_str_to_u64(n, strlen(n), 86400, &ttl) || ttl == 0) { fprintf(stderr, "bevan token: bad --ttl\n"); return 2; }
        } else { fprintf(stderr, "bevan token: bad option '%s'\n%s", a, token_help); return 2; }
    }
    if (!scope) { fputs(token_help, stderr); return 2; }
    char *base = aud ? bv_strdup(aud) : read_base(data);
    if (!base) {
        fprintf(stderr, "bevan token: no %s/keys/base-url (start the server once, or give --aud)\n", data);
        return 1;
    }
    char kd[4096], err[300];
    snprintf(kd, sizeof kd, "%s/keys", data);
    bv_auth_options ao = {.key_dir = kd, .issuer = base, .audience = base, .read_only_keys = true};
    bv_auth *au;
    if (bv_auth_open(&ao, &au, err, sizeof err)) {
        fprintf(stderr, "bevan token: %s\n", err);
        free(base);
        return 1;
    }
    bv_arena *a = bv_arena_new(1 << 14);
    json_value *c = json_new(a, JSON_OBJECT);
    int64_t now = bv_now_ms() / 1000;
    char jti[40];
    bv_uuid4(jti);
    json_set(a, c, "iss", json_new_string(a, base));
    json_set(a, c, "aud", json_new_string(a, base));
    json_set(a, c, "sub", json_new_string(a, sub ? sub : user ? user : patient ? patient : "bevan-token"));
    json_set(a, c, "client_id", json_new_string(a, "bevan-cli"));
    json_set(a, c, "scope", json_new_string(a, scope));
    json_set(a, c, "iat", json_new_int(a, now));
    json_set(a, c, "exp", json_new_int(a, now + (int64_t)ttl));
    json_set(a, c, "jti", json_new_string(a, jti));
    if (patient) json_set(a, c, "patient", json_new_string(a, patient));
    if (user) json_set(a, c, "fhirUser", json_new_string(a, user));
    if (role) json_set(a, c, "role", json_new_string(a, role));
    if (org) json_set(a, c, "organization", json_new_string(a, org));
    char *tok = bv_auth_sign(au, a, c);
    int rc = 0;
    if (tok) printf("%s\n", tok);
    else { fprintf(stderr, "bevan token: signing failed\n"); rc = 1; }
    bv_arena_free(a);
    bv_auth_free(au);
    free(base);
    return rc;
}

/* ---------------------------------------------------------------- client / user */
typedef struct {
    const char *key, *value;
} kvw;

static int kvw_run(bv_store_txn *t, void *ctx)
{
    kvw *w = ctx;
    return bv_txn_kv_set(t, w->key, w->value);
}

static int store_kv(const char *data, const char *key, const char *value)
{
    bv_store *s;
    char err[256];
    bv_store_options so = {.dir = data};
    if (bv_store_open(&so, &s, err, sizeof err)) {
        fprintf(stderr, "bevan: cannot open the store in %s: %s\n", data, err);
        return 1;
    }
    kvw w = {key, value};
    int rc = bv_store_write(s, kvw_run, &w);
    bv_store_close(s);
    if (rc) fprintf(stderr, "bevan: cannot store %s\n", key);
    return rc ? 1 : 0;
}

static const char client_help[] =
    "usage: bevan client add --data DIR --id CLIENT_ID --jwks FILE [--scope \"system/*.rs\"]\n"
    "                        [--redirect-uri URI]...\n"
    "Registers a client of Bevan's authorization server: a backend service authenticating with\n"
    "private_key_jwt (its public keys in FILE, a JWKS) for client_credentials, and/or an app using\n"
    "authorization_code + PKCE with the given redirect URIs. --scope: the most it may be granted.\n"
    "The built-in public client bevan-web (this server's /web/*.html pages) needs no registration.\n";

int bv_cmd_client(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "add") != 0) { fputs(client_help, argc > 1 && !strcmp(argv[1], "--help") ? stdout : stderr); return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2; }
    const char *data = "./data", *id = NULL, *jwks = NULL, *scope = "system/*.rs";
    const char *ru[16];
    size_t nru = 0;
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
        if (!n) { fputs(client_help, stderr); return 2; }
        if (strcmp(a, "--data") == 0) data = n;
        else if (strcmp(a, "--id") == 0) id = n;
        else if (strcmp(a, "--jwks") == 0) jwks = n;
        else if (strcmp(a, "--scope") == 0) scope = n;
        else if (strcmp(a, "--redirect-uri") == 0 && nru < 16) ru[nru++] = n;
        else { fputs(client_help, stderr); return 2; }
    }
    if (!id || !bv_fhir_valid_id(id) || (!jwks && !nru)) { fputs(client_help, stderr); return 2; }
    bv_arena *a = bv_arena_new(1 << 14);
    json_value *o = json_new(a, JSON_OBJECT);
    json_set(a, o, "client_id", json_new_string(a, id));
    json_set(a, o, "scope", json_new_string(a, scope));
    if (jwks) {
        size_t len;
        char *t = bv_read_text_file(jwks, 1 << 20, &len);
        json_value *j;
        json_error je;
        if (!t || json_parse(a, t, len, NULL, &j, &je) || !json_is(json_get(j, "keys"), JSON_ARRAY)) {
            fprintf(stderr, "bevan client add: %s is not a JWKS (a JSON object with keys)\n", jwks);
            free(t);
            bv_arena_free(a);
            return 1;
        }
        free(t);
        json_set(a, o, "jwks", j);
    }
    json_value *arr = json_new(a, JSON_ARRAY);
    for (size_t i = 0; i < nru; i++) json_push(a, arr, json_new_string(a, ru[i]));
    json_set(a, o, "redirect_uris", arr);
    bv_buf b;
    bv_buf_init(&b, 0);
    json_write(&b, o, false);
    int rc = store_kv(data, bv_arena_printf(a, "auth.client.%s", id), bv_buf_cstr(&b));
    bv_buf_free(&b);
    bv_arena_free(a);
    if (!rc) printf("client %s registered\n", id);
    return rc;
}

static const char user_help[] =
    "usage: bevan user add --data DIR --username NAME (--password-stdin | --password P)\n"
    "                      --fhir-user Practitioner/ID|Patient/ID|RelatedPerson/ID\n"
    "                      [--role clinician|care-worker|administrative|privacy-officer]\n"
    "                      [--org Organization/ID] [--patient ID] [--scope \"user/*.cruds\"]\n"
    "Adds (or replaces) a local account for the login page (/auth/authorize). The password is\n"
    "stored as an Argon2id hash. --scope is the most the account may be granted.\n";

int bv_cmd_user(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "add") != 0) { fputs(user_help, argc > 1 && !strcmp(argv[1], "--help") ? stdout : stderr); return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2; }
    const char *data = "./data", *un = NULL, *pw = NULL, *fu = NULL, *role = NULL, *org = NULL, *patient = NULL,
               *scope = NULL;
    bool pw_stdin = false;
    for (int i = 2; i < argc;) {
        const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--password-stdin") == 0) { pw_stdin = true; i++; continue; }
        if (!n) { fputs(user_help, stderr); return 2; }
        if (strcmp(a, "--data") == 0) data = n;
        else if (strcmp(a, "--username") == 0) un = n;
        else if (strcmp(a, "--password") == 0) pw = n;
        else if (strcmp(a, "--fhir-user") == 0) fu = n;
        else if (strcmp(a, "--role") == 0) role = n;
        else if (strcmp(a, "--org") == 0) org = n;
        else if (strcmp(a, "--patient") == 0) patient = n;
        else if (strcmp(a, "--scope") == 0) scope = n;
        else { fputs(user_help, stderr); return 2; }
        i += 2;
    }
    char line[1024];
    if (pw_stdin) {
        if (!fgets(line, sizeof line, stdin)) { fprintf(stderr, "bevan user add: no password on stdin\n"); return 2; }
        line[strcspn(line, "\r\n")] = '\0';
        pw = line;
    }
    if (!un || !bv_fhir_valid_id(un) || !pw || strlen(pw) < 8 || !fu || !strchr(fu, '/')) {
        fputs(user_help, stderr);
        if (pw && strlen(pw) < 8) fprintf(stderr, "bevan user add: the password needs at least 8 characters\n");
        return 2;
    }
    bool is_patient = bv_starts_with(fu, "Patient/") || bv_starts_with(fu, "RelatedPerson/");
    if (!scope) scope = is_patient ? "openid fhirUser launch/patient patient/*.rs" : "openid fhirUser user/*.cruds";
    if (bv_starts_with(fu, "Patient/") && !patient) patient = fu + 8;
    bv_arena *a = bv_arena_new(1 << 14);
    char *hash = bv_password_hash(a, pw);
    if (!hash) { fprintf(stderr, "bevan user add: hashing failed\n"); bv_arena_free(a); return 1; }
    json_value *o = json_new(a, JSON_OBJECT);
    json_set(a, o, "username", json_new_string(a, un));
    json_set(a, o, "password", json_new_string(a, hash));
    json_set(a, o, "fhirUser", json_new_string(a, fu));
    json_set(a, o, "scope", json_new_string(a, scope));
    if (role) json_set(a, o, "role", json_new_string(a, role));
    if (org) json_set(a, o, "organization", json_new_string(a, org));
    if (patient) json_set(a, o, "patient", json_new_string(a, patient));
    bv_buf b;
    bv_buf_init(&b, 0);
    json_write(&b, o, false);
    int rc = store_kv(data, bv_arena_printf(a, "auth.user.%s", un), bv_buf_cstr(&b));
    bv_buf_free(&b);
    bv_arena_free(a);
    if (!rc) printf("user %s added\n", un);
    return rc;
}
