/* Private to src/cli: auth set-up for `bevan serve` and the token/client/user commands. */
#ifndef BEVAN_CLI_AUTH_CMD_H
#define BEVAN_CLI_AUTH_CMD_H

#include "bevan/api.h"

typedef struct {
    bool off;                     /* --auth off */
    const char *base_url;         /* --base-url */
    const char *jwks[8];          /* --jwks FILE */
    size_t n_jwks;
    const char *trust[8];         /* --trust-issuer ISS=FILE */
    size_t n_trust;
    const char *policy;           /* --policy FILE */
} cli_auth_opts;

/* Parses one auth option at argv[*i]; true when it was one (advances *i past its value). */
bool cli_auth_option(cli_auth_opts *o, int argc, char **argv, int *i, bool *bad);
/* Before the HTTP server starts: checks --auth off is on loopback (warns), or switches auth on
 * (keys in DATA/keys, policy). Returns 0 or prints why and returns 1. */
int cli_auth_setup(const cli_auth_opts *o, bv_api *api, const char *data, const char *listen, bv_auth **out);
/* After the port is known: the base URL becomes the tokens' audience; DATA/keys/base-url is
 * written for `bevan token`. */
void cli_auth_ready(const cli_auth_opts *o, bv_auth *au, const char *data, const char *host, int port, bool tls);

#endif
