/* JSON Patch (RFC 6902) on the arena DOM, with JSON Pointers (RFC 6901). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    json_value *parent;   /* container holding the target (NULL for the root) */
    const char *key;      /* object member name, or array index text */
    size_t index;         /* array index (SIZE_MAX for "-": the end) */
} ptr_target;

/* Decode one reference token (~1 -> /, ~0 -> ~). */
static char *decode_token(bv_arena *a, const char *s, size_t n, bool *ok)
{
    char *out = bv_arena_alloc(a, n + 1), *o = out;
    *ok = true;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~') {
            if (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1')) { *ok = false; return NULL; }
            *o++ = s[i + 1] == '0' ? '~' : '/';
            i++;
        } else *o++ = s[i];
    }
    *o = '\0';
    return out;
}

static bool array_index(const char *tok, size_t count, bool allow_end, size_t *out)
{
    if (allow_end && strcmp(tok, "-") == 0) { *out = count; return true; }
    if (!*tok || (tok[0] == '0' && tok[1])) return false;
    uint64_t v;
    if (bv_str_to_u64(tok, strlen(tok), UINT32_MAX, &v)) return false;
    *out = (size_t)v;
    return true;
}

/* Resolve a pointer to its parent container and last token. */
static int resolve(bv_arena *a, json_value *root, const char *ptr, ptr_target *t, char *err, size_t errlen)
{
    if (*ptr == '\0') { t->parent = NULL; t->key = NULL; return 0; }
    if (*ptr != '/') { snprintf(err, errlen, "path '%s' must start with '/'", ptr); return -1; }
    json_value *cur = root, *parent = NULL;
    const char *p = ptr + 1, *last = NULL;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        bool ok;
        char *tok = decode_token(a, p, n, &ok);
        if (!ok) { snprintf(err, errlen, "bad escape in path '%s'", ptr); return -1; }
        if (!slash) { parent = cur; last = tok; break; }
        if (json_is(cur, JSON_OBJECT)) cur = json_get(cur, tok);
        else if (json_is(cur, JSON_ARRAY)) {
            size_t idx;
            if (!array_index(tok, json_count(cur), false, &idx) || idx >= json_count(cur)) cur = NULL;
            else cur = json_at(cur, idx);
        } else cur = NULL;
        if (!cur) { snprintf(err, errlen, "path '%s' does not exist", ptr); return -1; }
        p = slash + 1;
    }
    t->parent = parent;
    t->key = last;
    return 0;
}

static json_value *get_at(const ptr_target *t, json_value *root)
{
    if (!t->parent) return root;
    if (json_is(t->parent, JSON_OBJECT)) return json_get(t->parent, t->key);
    if (json_is(t->parent, JSON_ARRAY)) {
        size_t idx;
        if (!array_index(t->key, json_count(t->parent), false, &idx) || idx >= json_count(t->parent)) return NULL;
        return json_at(t->parent, idx);
    }
    return NULL;
}

static int do_add(bv_arena *a, json_value **root, const char *path, json_value *v, char *err, size_t errlen)
{
    ptr_target t;
    if (resolve(a, *root, path, &t, err, errlen)) return -1;
    if (!t.parent) { *root = v; return 0; }
    if (json_is(t.parent, JSON_OBJECT)) { json_set(a, t.parent, t.key, v); return 0; }
    if (json_is(t.parent, JSON_ARRAY)) {
        size_t idx;
        if (!array_index(t.key, json_count(t.parent), true, &idx) || idx > json_count(t.parent)) {
            snprintf(err, errlen, "array index out of range in '%s'", path);
            return -1;
        }
        json_array_insert(a, t.parent, idx, v);
        return 0;
    }
    snprintf(err, errlen, "parent of '%s' is not a container", path);
    return -1;
}

static int do_remove(bv_arena *a, json_value **root, const char *path, json_value **removed, char *err, size_t errlen)
{
    ptr_target t;
    if (resolve(a, *root, path, &t, err, errlen)) return -1;
    json_value *v = get_at(&t, *root);
    if (!v) { snprintf(err, errlen, "path '%s' does not exist", path); return -1; }
    if (!t.parent) { snprintf(err, errlen, "cannot remove the whole document"); return -1; }
    if (removed) *removed = v;
    if (json_is(t.parent, JSON_OBJECT)) json_remove(t.parent, t.key);
    else {
        size_t idx;
        if (!array_index(t.key, json_count(t.parent), false, &idx)) { /* get_at found it: cannot happen */
            snprintf(err, errlen, "array index out of range in '%s'", path);
            return -1;
        }
        json_array_remove(t.parent, idx);
    }
    return 0;
}

int api_json_patch(bv_arena *a, json_value **doc, const json_value *patch, char *err, size_t errlen)
{
    for (size_t i = 0; i < json_count(patch); i++) {
        const json_value *op = json_at(patch, i);
        const char *name = json_get_str(op, "op"), *path = json_get_str(op, "path");
        if (!name || !path) { snprintf(err, errlen, "operation %zu needs 'op' and 'path'", i); return -1; }
        json_value *value = json_get(op, "value");
        const char *from = json_get_str(op, "from");
        char sub[240];
        int rc;
        if (strcmp(name, "add") == 0) {
            if (!value) { snprintf(err, errlen, "operation %zu (add) needs 'value'", i); return -1; }
            rc = do_add(a, doc, path, json_clone(a, value), sub, sizeof sub);
        } else if (strcmp(name, "remove") == 0) {
            rc = do_remove(a, doc, path, NULL, sub, sizeof sub);
        } else if (strcmp(name, "replace") == 0) {
            if (!value) { snprintf(err, errlen, "operation %zu (replace) needs 'value'", i); return -1; }
            rc = do_remove(a, doc, path, NULL, sub, sizeof sub);
            if (!rc) rc = do_add(a, doc, path, json_clone(a, value), sub, sizeof sub);
        } else if (strcmp(name, "move") == 0 || strcmp(name, "copy") == 0) {
            if (!from) { snprintf(err, errlen, "operation %zu (%s) needs 'from'", i, name); return -1; }
            bool move = name[0] == 'm';
            if (move && strncmp(path, from, strlen(from)) == 0 && path[strlen(from)] == '/') {
                snprintf(err, errlen, "operation %zu moves a value into itself", i);
                return -1;
            }
            ptr_target t;
            json_value *v = NULL;
            rc = resolve(a, *doc, from, &t, sub, sizeof sub);
            if (!rc) {
                v = get_at(&t, *doc);
                if (!v) { snprintf(sub, sizeof sub, "path '%s' does not exist", from); rc = -1; }
            }
            if (!rc && move) rc = do_remove(a, doc, from, NULL, sub, sizeof sub);
            if (!rc) rc = do_add(a, doc, path, move ? v : json_clone(a, v), sub, sizeof sub);
        } else if (strcmp(name, "test") == 0) {
            ptr_target t;
            rc = resolve(a, *doc, path, &t, sub, sizeof sub);
            if (!rc) {
                json_value *v = get_at(&t, *doc);
                if (!v || !value || !json_equal(v, value)) {
                    snprintf(sub, sizeof sub, "test failed at '%s'", path);
                    rc = -1;
                }
            }
        } else {
            snprintf(err, errlen, "operation %zu: unknown op '%s'", i, name);
            return -1;
        }
        if (rc) { snprintf(err, errlen, "operation %zu (%s): %s", i, name, sub); return -1; }
    }
    return 0;
}
