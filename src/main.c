/* bevan: argv -> the subcommands; nothing else. */
#include "bevan/cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs("Bevan — an open-standards shared care record server (HL7 FHIR R4)\n\n"
          "usage: bevan <command> [options]\n\n"
          "commands:\n"
          "  serve    serve the FHIR API            (bevan serve --help)\n"
          "  import   import Bundles and NDJSON     (bevan import --help)\n"
          "  check    check the store's integrity   (bevan check --help)\n"
          "  demo     generate a synthetic UK population into a data folder (bevan demo --help)\n"
          "  reindex  rebuild every search-index row from the stored resources (bevan reindex --help)\n"
          "  backup   copy a live store to a file   (bevan backup --help)\n"
          "  token    print a signed access token for development and tests (bevan token --help)\n"
          "  client   register a client of the authorization server (bevan client add --help)\n"
          "  user     add a local account for the login page (bevan user add --help)\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) { usage(stdout); return 0; }
    if (strcmp(cmd, "serve") == 0) return bv_cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0) return bv_cmd_import(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0) return bv_cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0) return bv_cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "reindex") == 0) return bv_cmd_reindex(argc - 1, argv + 1);
    if (strcmp(cmd, "backup") == 0) return bv_cmd_backup(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0) return bv_cmd_token(argc - 1, argv + 1);
    if (strcmp(cmd, "client") == 0) return bv_cmd_client(argc - 1, argv + 1);
    if (strcmp(cmd, "user") == 0) return bv_cmd_user(argc - 1, argv + 1);
    fprintf(stderr, "bevan: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
