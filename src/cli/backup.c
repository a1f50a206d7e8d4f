/* bevan backup: a consistent copy of a live store, while the server keeps writing. */
#include "bevan/cli.h"
#include "bevan/core.h"
#include "bevan/store.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char backup_help[] =
    "usage: bevan backup --data DIR OUT\n"
    "Copies the store in DIR to OUT (a file; or, when OUT is a folder, OUT/bevan.db) with SQLite's\n"
    "online backup API: one read snapshot, so a running server keeps writing meanwhile. The copy is\n"
    "a single self-contained database file, synced before it is renamed into place. It holds every\n"
    "write committed when the backup began (and possibly writes committed but not yet acknowledged).\n"
    "Restore: stop the server and put the file as DIR/bevan.db of an empty folder (then bevan check).\n";

int bv_cmd_backup(int argc, char **argv)
{
    const char *data = "./data", *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { fputs(backup_help, stdout); return 0; }
        if (strcmp(a, "--data") == 0 && i + 1 < argc) data = argv[++i];
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "bevan: bad option '%s'\n%s", a, backup_help); return 2; }
        else if (!out) out = a;
        else { fprintf(stderr, "bevan backup: one output path only\n%s", backup_help); return 2; }
    }
    if (!out) { fprintf(stderr, "bevan backup: no output path\n%s", backup_help); return 2; }
    struct stat st;
    if (stat(data, &st) != 0 || !S_ISDIR(st.st_mode)) { fprintf(stderr, "bevan backup: %s is not a data folder\n", data); return 1; }
    char path[4096];
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(path, sizeof path, "%s/bevan.db", out);
    else snprintf(path, sizeof path, "%s", out);

    char err[512] = "";
    bv_store_options so = {.dir = data, .read_only = true};
    bv_store *s;
    if (bv_store_open(&so, &s, err, sizeof err)) {
        fprintf(stderr, "bevan backup: cannot open the store in %s: %s\n", data, err);
        return 1;
    }
    int64_t t0 = bv_now_ms();
    int rc = bv_store_backup(s, path, err, sizeof err);
    bv_store_close(s);
    if (rc) {
        fprintf(stderr, "bevan backup: %s\n", err);
        return 1;
    }
    if (stat(path, &st) == 0)
        printf("backup of %s written to %s (%lld bytes, %.2f s)\n", data, path, (long long)st.st_size,
               (double)(bv_now_ms() - t0) / 1000.0);
    return 0;
}
