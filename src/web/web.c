/* Static files of the web pages (include/bevan/web.h). Names are checked before any file is
 * opened: one or two path segments of [A-Za-z0-9._-], no leading dot, so nothing outside the
 * folder can be named. Files are read per request (they are small) so an edit shows at once. */
#include "bevan/web.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct bv_web {
    char dir[PATH_MAX];
};

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

bv_web *bv_web_new(const char *dir)
{
    char path[PATH_MAX];
    if (dir) {
        if (!is_dir(dir)) return NULL;
        snprintf(path, sizeof path, "%s", dir);
    } else {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) return NULL;
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (!slash) return NULL;
        *slash = '\0';
        snprintf(path, sizeof path, "%.*s/web", (int)(sizeof path - 8), exe);
        if (!is_dir(path)) {
            snprintf(path, sizeof path, "%.*s/../web", (int)(sizeof path - 12), exe);
            if (!is_dir(path)) return NULL;
        }
    }
    bv_web *w = bv_calloc(1, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "%s", path);
    return w;
}

void bv_web_free(bv_web *w) { free(w); }
const char *bv_web_dir(const bv_web *w) { return w ? w->dir : NULL; }

static bool name_ok(const char *p)
{
    size_t segs = 0;
    while (*p) {
        size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
        if (n == 0 || p[0] == '.' || n > 100) return false;
        segs++;
        p += n;
        if (*p == '/') { p++; if (!*p) return false; }
        else if (*p) return false;
    }
    return segs >= 1 && segs <= 2;
}

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0 || strcmp(dot, ".mjs") == 0) return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
    if (strcmp(dot, ".png") == 0) return "image/png";
    if (strcmp(dot, ".json") == 0) return "application/json";
    if (strcmp(dot, ".txt") == 0) return "text/plain; charset=utf-8";
    return "application/octet-stream";
}

static void plain(bv_response *resp, int status, const char *msg)
{
    resp->status = status;
    resp->content_type = "text/plain; charset=utf-8";
    bv_buf_reset(&resp->body);
    bv_buf_puts(&resp->body, msg);
}

bool bv_web_handle(bv_web *w, bv_request *req, bv_response *resp)
{
    const char *path = req->path;
    size_t pl = strlen(BV_WEB_PREFIX);
    if (strncmp(path, BV_WEB_PREFIX, pl) != 0 || (path[pl] != '/' && path[pl] != '\0')) return false;
    if (!w) {
        plain(resp, 404, "the web pages are not installed (see docs/web.md: --web DIR)\n");
        return true;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        bv_response_header(resp, "Allow", "GET, HEAD");
        plain(resp, 405, "method not allowed\n");
        return true;
    }
    const char *name = path[pl] ? path + pl + 1 : "";
    if (!*name) {
        resp->status = 302;
        bv_response_header(resp, "Location", BV_WEB_PREFIX "/board.html");
        resp->content_type = NULL;
        return true;
    }
    if (!name_ok(name)) {
        plain(resp, 404, "not found\n");
        return true;
    }
    char file[PATH_MAX + 256];
    snprintf(file, sizeof file, "%s/%s", w->dir, name);
    size_t len = 0;
    char *data = bv_read_text_file(file, BV_WEB_MAX_FILE, &len);
    if (!data) {
        plain(resp, 404, "not found\n");
        return true;
    }
    resp->status = 200;
    resp->content_type = content_type(name);
    bv_response_header(resp, "Cache-Control", "no-cache");
    bv_buf_reset(&resp->body);
    bv_buf_append(&resp->body, data, len);
    free(data);
    return true;
}
