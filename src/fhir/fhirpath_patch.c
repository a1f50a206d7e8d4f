/* FHIRPath Patch (FHIR R4 http.html#patch, "FHIRPath Patch"): a Parameters resource whose
 * "operation" parameters add, insert, delete, replace and move elements selected by FHIRPath paths.
 * Pure logic over the JSON DOM: the caller parses the stored resource, calls bv_fhirpath_patch and
 * validates the result like an update. */
#include "fhirpath_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    bv_arena *a;
    json_value *doc;
    char *err;
    size_t errlen;
    int op_no;            /* 1-based number of the operation, for messages */
} patch_ctx;

static int perr(patch_ctx *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(patch_ctx *p, int rc, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->op_no > 0) snprintf(p->err, p->errlen, "operation %d: %s", p->op_no, msg);
    else snprintf(p->err, p->errlen, "%s", msg);
    return rc;
}

/* ---- where a node sits in the document ---- */
typedef struct {
    json_value *obj;   /* object holding the member */
    size_t mi;         /* member index in obj */
    json_value *arr;   /* the member's array when the node is an array item, else NULL */
    size_t ai;         /* index in arr */
} node_loc;

static bool find_loc(json_value *cur, const json_value *target, node_loc *L, int depth)
{
    if (depth > 200 || !cur) return false;
    if (json_is(cur, JSON_OBJECT)) {
        for (size_t i = 0; i < cur->u.obj.count; i++) {
            json_value *v = cur->u.obj.members[i].value;
            if (v == target) { *L = (node_loc){.obj = cur, .mi = i}; return true; }
            if (json_is(v, JSON_ARRAY)) {
                for (size_t j = 0; j < v->u.arr.count; j++) {
                    if (v->u.arr.items[j] == target) { *L = (node_loc){.obj = cur, .mi = i, .arr = v, .ai = j}; return true; }
                    if (find_loc(v->u.arr.items[j], target, L, depth + 1)) return true;
                }
            } else if (find_loc(v, target, L, depth + 1)) return true;
        }
    } else if (json_is(cur, JSON_ARRAY)) {
        for (size_t j = 0; j < cur->u.arr.count; j++)
            if (find_loc(cur->u.arr.items[j], target, L, depth + 1)) return true;
    }
    return false;
}

static const char *loc_key(const node_loc *L) { return L->obj->u.obj.members[L->mi].key; }

/* The "_name" companion array of a primitive array member (parallel items), or NULL. */
static json_value *companion_array(patch_ctx *p, const node_loc *L)
{
    const char *k = loc_key(L);
    if (k[0] == '_') return NULL;
    json_value *c = json_get(L->obj, bv_arena_printf(p->a, "_%s", k));
    return json_is(c, JSON_ARRAY) ? c : NULL;
}

/* ---- definitions: where the children of an element are described ---- */
typedef struct {
    const fhir_type *t;      /* a complex type or resource */
    const fhir_element *e;   /* an inline structure (BackboneElement) */
} def_scope;

static def_scope scope_of_item(const fp_item *it)
{
    if (it->elem && (it->elem->first_child >= 0 || it->elem->content_ref >= 0)) return (def_scope){NULL, it->elem};
    return (def_scope){it->type ? fp_type_find(it->type) : NULL, NULL};
}

static def_scope scope_of_element(const fhir_element *e, const char *choice_type)
{
    if (!e) return (def_scope){0};
    if (e->first_child >= 0 || e->content_ref >= 0) return (def_scope){NULL, e};
    const char *t = choice_type ? choice_type : (e->n_types == 1 ? e->types[0] : NULL);
    return (def_scope){t ? fp_type_find(t) : NULL, NULL};
}

static const fhir_element *scope_child(def_scope s, const char *name, const char **choice)
{
    if (choice) *choice = NULL;
    if (s.e) return fhir_element_child(s.e, name, choice);
    if (s.t) return fhir_type_element(s.t, name, choice);
    return NULL;
}

/* ---- Parameters parsing ---- */
typedef struct {
    const char *type, *path, *name;
    const json_value *value_part;   /* the part named "value" */
    bool has_index, has_source, has_dest;
    int64_t index, source, dest;
} patch_op;

/* The value[x] member of a parameter or part: sets *suffix to the type ("Quantity", "String"). */
static json_value *value_x(const json_value *part, const char **suffix)
{
    for (size_t i = 0; i < part->u.obj.count; i++) {
        const char *k = part->u.obj.members[i].key;
        if (strncmp(k, "value", 5) == 0 && k[5] >= 'A' && k[5] <= 'Z') {
            if (suffix) *suffix = k + 5;
            return part->u.obj.members[i].value;
        }
    }
    return NULL;
}

/* Builds the JSON value of a "value" part: its value[x], or an object made of its sub-parts
 * (name -> value, recursively). scope describes the element the value is for, so that repeating
 * children become arrays; it may be empty. */
static int build_value(patch_ctx *p, const json_value *part, def_scope scope, int depth, json_value **out,
                       const char **suffix)
{
    if (depth > 32) return perr(p, BV_EINVAL, "value parts nested too deeply");
    if (suffix) *suffix = NULL;
    json_value *vx = value_x(part, suffix);
    if (vx) {
        *out = json_clone(p->a, vx);
        return BV_OK;
    }
    const json_value *parts = json_get(part, "part");
    if (!json_is(parts, JSON_ARRAY) || json_count(parts) == 0)
        return perr(p, BV_EINVAL, "a value needs a value[x] or parts");
    json_value *obj = json_new(p->a, JSON_OBJECT);
    for (size_t i = 0; i < json_count(parts); i++) {
        const json_value *sp = json_at(parts, i);
        const char *name = json_get_str(sp, "name");
        if (!json_is(sp, JSON_OBJECT) || !name || !*name) return perr(p, BV_EINVAL, "a value part needs a name");
        const char *choice = NULL;
        const fhir_element *ce = scope_child(scope, name, &choice);
        json_value *cv;
        const char *sub_suffix = NULL;
        int rc = build_value(p, sp, scope_of_element(ce, choice), depth + 1, &cv, &sub_suffix);
        if (rc) return rc;
        const char *key = name;
        if (!ce && sub_suffix) {   /* a choice element named without its type: value + Quantity */
            const char *k2 = bv_arena_printf(p->a, "%s%s", name, sub_suffix);
            const fhir_element *ce2 = scope_child(scope, k2, &choice);
            if (ce2 && ce2->choice) { key = k2; ce = ce2; }
        }
        json_value *have = json_get(obj, key);
        bool repeating = ce ? ce->max > 1 : false;
        if (have) {
            if (!json_is(have, JSON_ARRAY)) {
                json_value *arr = json_new(p->a, JSON_ARRAY);
                json_push(p->a, arr, have);
                json_set(p->a, obj, key, arr);
                have = arr;
            }
            json_push(p->a, have, cv);
        } else if (repeating) {
            json_value *arr = json_new(p->a, JSON_ARRAY);
            json_push(p->a, arr, cv);
            json_set(p->a, obj, key, arr);
        } else {
            json_set(p->a, obj, key, cv);
        }
    }
    *out = obj;
    return BV_OK;
}

static int int_part(patch_ctx *p, const json_value *part, const char *name, int64_t *out)
{
    const json_value *v = json_get(part, "valueInteger");
    if (!v || !json_number_to_i64(v, out) || *out < 0)
        return perr(p, BV_EINVAL, "'%s' needs a valueInteger of 0 or more", name);
    return BV_OK;
}

static int parse_op(patch_ctx *p, const json_value *param, patch_op *op)
{
    memset(op, 0, sizeof *op);
    if (!json_is(param, JSON_OBJECT) || !bv_streq(json_get_str(param, "name"), "operation"))
        return perr(p, BV_EINVAL, "every parameter must be named 'operation'");
    const json_value *parts = json_get(param, "part");
    if (!json_is(parts, JSON_ARRAY)) return perr(p, BV_EINVAL, "an operation needs parts");
    for (size_t i = 0; i < json_count(parts); i++) {
        const json_value *pt = json_at(parts, i);
        const char *n = json_is(pt, JSON_OBJECT) ? json_get_str(pt, "name") : NULL;
        if (!n) return perr(p, BV_EINVAL, "an operation part needs a name");
        if (strcmp(n, "type") == 0) {
            op->type = json_get_str(pt, "valueCode");
            if (!op->type) return perr(p, BV_EINVAL, "'type' needs a valueCode");
        } else if (strcmp(n, "path") == 0) {
            op->path = json_get_str(pt, "valueString");
            if (!op->path) return perr(p, BV_EINVAL, "'path' needs a valueString");
        } else if (strcmp(n, "name") == 0) {
            op->name = json_get_str(pt, "valueString");
            if (!op->name) return perr(p, BV_EINVAL, "'name' needs a valueString");
        } else if (strcmp(n, "value") == 0) {
            op->value_part = pt;
        } else if (strcmp(n, "index") == 0) {
            if (int_part(p, pt, n, &op->index)) return BV_EINVAL;
            op->has_index = true;
        } else if (strcmp(n, "source") == 0) {
            if (int_part(p, pt, n, &op->source)) return BV_EINVAL;
            op->has_source = true;
        } else if (strcmp(n, "destination") == 0) {
            if (int_part(p, pt, n, &op->dest)) return BV_EINVAL;
            op->has_dest = true;
        } else {
            return perr(p, BV_EINVAL, "unknown operation part '%s'", n);
        }
    }
    if (!op->type) return perr(p, BV_EINVAL, "an operation needs a 'type'");
    if (!op->path) return perr(p, BV_EINVAL, "an operation needs a 'path'");
    const char *t = op->type;
    bool add = !strcmp(t, "add"), ins = !strcmp(t, "insert"), del = !strcmp(t, "delete"),
         rep = !strcmp(t, "replace"), mov = !strcmp(t, "move");
    if (!add && !ins && !del && !rep && !mov)
        return perr(p, BV_EINVAL, "unknown operation type '%s' (add, insert, delete, replace, move)", t);
    if (add && !op->name) return perr(p, BV_EINVAL, "add needs a 'name'");
    if ((add || ins || rep) && !op->value_part) return perr(p, BV_EINVAL, "%s needs a 'value'", t);
    if (ins && !op->has_index) return perr(p, BV_EINVAL, "insert needs an 'index'");
    if (mov && (!op->has_source || !op->has_dest)) return perr(p, BV_EINVAL, "move needs 'source' and 'destination'");
    return BV_OK;
}

/* ---- evaluation ---- */
static int eval_path(patch_ctx *p, const char *path, fp_coll *out)
{
    char msg[256];
    bv_fp_expr *e = bv_fhirpath_compile(p->a, path, msg, sizeof msg);
    if (!e) return perr(p, BV_EINVAL, "path '%.200s' is not valid FHIRPath: %s", path, msg);
    fp_item root = fp_resource_item(p->doc);
    if (fp_eval_items(p->a, NULL, e, &root, &root, 1, NULL, out, msg, sizeof msg))
        return perr(p, BV_ECONFLICT, "path '%.200s' failed: %s", path, msg);
    return BV_OK;
}

/* The JSON value an item stands for in the document (a primitive with only extensions: its
 * "_name" object). */
static const json_value *item_json(const fp_item *it)
{
    if (it->kind != BV_FP_NODE) return NULL;
    return it->node ? it->node : it->ext;
}

static int locate(patch_ctx *p, const fp_item *it, const char *path, node_loc *L)
{
    const json_value *j = item_json(it);
    if (!j || !find_loc(p->doc, j, L, 0))
        return perr(p, BV_ECONFLICT, "path '%.200s' does not select an element of the resource", path);
    return BV_OK;
}

/* "A.b.c" -> "A.b" and "c" when the path ends in a plain name, else false. */
static bool split_path(bv_arena *a, const char *path, const char **parent, const char **name)
{
    size_t n = strlen(path);
    while (n && path[n - 1] == ' ') n--;
    size_t e = n;
    while (n && (path[n - 1] == '_' || (path[n - 1] >= 'a' && path[n - 1] <= 'z') ||
                 (path[n - 1] >= 'A' && path[n - 1] <= 'Z') || (path[n - 1] >= '0' && path[n - 1] <= '9')))
        n--;
    if (n == e || n < 2 || path[n - 1] != '.') return false;
    *parent = bv_arena_strndup(a, path, n - 1);
    *name = bv_arena_strndup(a, path + n, e - n);
    return true;
}

/* Adds value under name to the single element selected by path. */
static int add_child(patch_ctx *p, const char *path, const char *name, const json_value *value_part)
{
    fp_coll c;
    int rc = eval_path(p, path, &c);
    if (rc) return rc;
    if (c.n != 1)
        return perr(p, BV_ECONFLICT, "path '%.200s' selects %zu elements; add needs exactly one", path, c.n);
    const fp_item *it = &c.items[0];
    json_value *target = (json_value *)(uintptr_t)item_json(it);
    if (!it->node || !json_is(target, JSON_OBJECT))
        return perr(p, BV_ECONFLICT, "path '%.200s' does not select an element that can have children", path);
    if (target != p->doc) {
        node_loc L;
        if (locate(p, it, path, &L)) return BV_ECONFLICT;
    }
    def_scope scope = scope_of_item(it);
    const char *choice = NULL;
    const fhir_element *ce = scope_child(scope, name, &choice);
    json_value *v;
    const char *suffix = NULL;
    rc = build_value(p, value_part, scope_of_element(ce, choice), 0, &v, &suffix);
    if (rc) return rc;
    const char *key = name;
    if (!ce && suffix) {
        const char *k2 = bv_arena_printf(p->a, "%s%s", name, suffix);
        ce = scope_child(scope, k2, &choice);
        if (ce && ce->choice) key = k2;
        else ce = NULL;
    }
    if (!ce && (scope.t || scope.e))
        return perr(p, BV_ECONFLICT, "'%.100s' is not an element of %s", name,
                    scope.e ? scope.e->path : scope.t->name);
    json_value *have = json_get(target, key);
    if (ce && ce->max > 1) {
        if (!have) {
            have = json_new(p->a, JSON_ARRAY);
            json_set(p->a, target, key, have);
        }
        if (!json_is(have, JSON_ARRAY)) return perr(p, BV_ECONFLICT, "'%.100s' is not a list in the resource", key);
        json_push(p->a, have, v);
        json_value *comp = json_get(target, bv_arena_printf(p->a, "_%s", key));
        if (json_is(comp, JSON_ARRAY) && json_count(comp) + 1 == json_count(have))
            json_push(p->a, comp, json_new(p->a, JSON_NULL));
        return BV_OK;
    }
    if (have) return perr(p, BV_ECONFLICT, "'%.100s' already has a value (use replace)", key);
    json_set(p->a, target, key, v);
    return BV_OK;
}

/* The list the items of c belong to (all in one array member), or an error. */
static int common_list(patch_ctx *p, const fp_coll *c, const char *path, node_loc *L)
{
    for (size_t i = 0; i < c->n; i++) {
        node_loc li;
        if (locate(p, &c->items[i], path, &li)) return BV_ECONFLICT;
        if (!li.arr) return perr(p, BV_ECONFLICT, "path '%.200s' does not select a list", path);
        if (i == 0) *L = li;
        else if (li.arr != L->arr)
            return perr(p, BV_ECONFLICT, "path '%.200s' selects elements of more than one list", path);
    }
    return BV_OK;
}

static void remove_member(json_value *obj, size_t mi)
{
    memmove(&obj->u.obj.members[mi], &obj->u.obj.members[mi + 1],
            (obj->u.obj.count - mi - 1) * sizeof obj->u.obj.members[0]);
    obj->u.obj.count--;
}

static int op_delete(patch_ctx *p, const patch_op *op)
{
    fp_coll c;
    int rc = eval_path(p, op->path, &c);
    if (rc) return rc;
    if (c.n == 0) return BV_OK;   /* nothing to delete: not an error */
    if (c.n > 1)
        return perr(p, BV_ECONFLICT, "path '%.200s' selects %zu elements; delete needs one", op->path, c.n);
    node_loc L;
    if (locate(p, &c.items[0], op->path, &L)) return BV_ECONFLICT;
    const char *key = loc_key(&L);
    const char *base = key[0] == '_' ? key + 1 : key;
    if (L.arr) {
        json_value *comp = companion_array(p, &L);
        json_array_remove(L.arr, L.ai);
        if (comp && L.ai < json_count(comp)) json_array_remove(comp, L.ai);
        if (json_count(L.arr) == 0) {
            json_remove(L.obj, key);
            json_remove(L.obj, bv_arena_printf(p->a, "_%s", base));
        }
        return BV_OK;
    }
    remove_member(L.obj, L.mi);
    if (key[0] == '_') json_remove(L.obj, base);
    else json_remove(L.obj, bv_arena_printf(p->a, "_%s", base));
    return BV_OK;
}

static int op_replace(patch_ctx *p, const patch_op *op)
{
    fp_coll c;
    int rc = eval_path(p, op->path, &c);
    if (rc) return rc;
    if (c.n != 1)
        return perr(p, BV_ECONFLICT, "path '%.200s' selects %zu elements; replace needs exactly one", op->path, c.n);
    const fp_item *it = &c.items[0];
    node_loc L;
    if (locate(p, it, op->path, &L)) return BV_ECONFLICT;
    json_value *v;
    const char *suffix = NULL;
    def_scope scope = it->elem && (it->elem->first_child >= 0 || it->elem->content_ref >= 0)
                          ? (def_scope){NULL, it->elem}
                          : (def_scope){it->type ? fp_type_find(it->type) : NULL, NULL};
    rc = build_value(p, op->value_part, scope, 0, &v, &suffix);
    if (rc) return rc;
    json_member *m = &L.obj->u.obj.members[L.mi];
    if (L.arr) {
        L.arr->u.arr.items[L.ai] = v;
        return BV_OK;
    }
    if (m->key[0] == '_') {   /* a primitive with only extensions gets its value */
        json_set(p->a, L.obj, m->key + 1, v);
        return BV_OK;
    }
    m->value = v;
    /* A choice element replaced by a value of another type: valueQuantity -> valueString. */
    if (suffix && it->type && it->type[0]) {
        const char *T = bv_arena_printf(p->a, "%c%s", it->type[0] >= 'a' && it->type[0] <= 'z' ? it->type[0] - 32 : it->type[0],
                                        it->type + 1);
        size_t kl = strlen(m->key), tl = strlen(T);
        if (kl > tl && strcmp(m->key + kl - tl, T) == 0 && strcmp(T, suffix) != 0) {
            const char *nk = bv_arena_printf(p->a, "%.*s%s", (int)(kl - tl), m->key, suffix);
            if (json_get(L.obj, nk)) return perr(p, BV_ECONFLICT, "'%s' already exists", nk);
            m->key = nk;
            m->key_len = strlen(nk);
        }
    }
    return BV_OK;
}

static int op_insert(patch_ctx *p, const patch_op *op)
{
    fp_coll c;
    int rc = eval_path(p, op->path, &c);
    if (rc) return rc;
    if (c.n == 0) {
        /* An empty list: insert at 0 is an add to the parent. */
        const char *parent, *name;
        if (op->index != 0)
            return perr(p, BV_ECONFLICT, "index %lld is out of range: '%.200s' is empty", (long long)op->index, op->path);
        if (!split_path(p->a, op->path, &parent, &name))
            return perr(p, BV_ECONFLICT, "path '%.200s' selects nothing", op->path);
        return add_child(p, parent, name, op->value_part);
    }
    node_loc L;
    if ((rc = common_list(p, &c, op->path, &L))) return rc;
    if ((uint64_t)op->index > json_count(L.arr))
        return perr(p, BV_ECONFLICT, "index %lld is out of range (the list has %zu items)", (long long)op->index,
                    json_count(L.arr));
    json_value *v;
    rc = build_value(p, op->value_part, scope_of_item(&c.items[0]), 0, &v, NULL);
    if (rc) return rc;
    json_value *comp = companion_array(p, &L);
    json_array_insert(p->a, L.arr, (size_t)op->index, v);
    if (comp && (size_t)op->index <= json_count(comp)) json_array_insert(p->a, comp, (size_t)op->index, json_new(p->a, JSON_NULL));
    return BV_OK;
}

static int op_move(patch_ctx *p, const patch_op *op)
{
    fp_coll c;
    int rc = eval_path(p, op->path, &c);
    if (rc) return rc;
    if (c.n == 0) return perr(p, BV_ECONFLICT, "path '%.200s' selects nothing", op->path);
    node_loc L;
    if ((rc = common_list(p, &c, op->path, &L))) return rc;
    size_t n = json_count(L.arr);
    if ((uint64_t)op->source >= n || (uint64_t)op->dest >= n)
        return perr(p, BV_ECONFLICT, "source %lld or destination %lld is out of range (the list has %zu items)",
                    (long long)op->source, (long long)op->dest, n);
    json_value *comp = companion_array(p, &L);
    json_value *v = json_at(L.arr, (size_t)op->source);
    json_array_remove(L.arr, (size_t)op->source);
    json_array_insert(p->a, L.arr, (size_t)op->dest, v);
    if (comp && json_count(comp) == n) {
        json_value *cv = json_at(comp, (size_t)op->source);
        json_array_remove(comp, (size_t)op->source);
        json_array_insert(p->a, comp, (size_t)op->dest, cv);
    }
    return BV_OK;
}

int bv_fhirpath_patch(bv_arena *a, json_value *doc, const json_value *params, char *err, size_t errlen)
{
    patch_ctx p = {.a = a, .doc = doc, .err = err, .errlen = errlen};
    if (!json_is(doc, JSON_OBJECT)) return perr(&p, BV_EINVAL, "the target is not a resource");
    if (!json_is(params, JSON_OBJECT) || !bv_streq(json_get_str(params, "resourceType"), "Parameters"))
        return perr(&p, BV_EINVAL, "a FHIRPath Patch body is a Parameters resource");
    const json_value *ps = json_get(params, "parameter");
    if (!json_is(ps, JSON_ARRAY) || json_count(ps) == 0)
        return perr(&p, BV_EINVAL, "a FHIRPath Patch needs at least one 'operation' parameter");
    if (json_count(ps) > 1000) return perr(&p, BV_EINVAL, "more than 1000 operations");
    /* Parse all first: a malformed operation anywhere is a 400 before anything is applied. */
    patch_op *ops = bv_arena_calloc(a, json_count(ps), sizeof *ops);
    for (size_t i = 0; i < json_count(ps); i++) {
        p.op_no = (int)i + 1;
        int rc = parse_op(&p, json_at(ps, i), &ops[i]);
        if (rc) return rc;
    }
    for (size_t i = 0; i < json_count(ps); i++) {
        p.op_no = (int)i + 1;
        const patch_op *op = &ops[i];
        int rc;
        switch (op->type[0]) {
        case 'a': rc = add_child(&p, op->path, op->name, op->value_part); break;
        case 'i': rc = op_insert(&p, op); break;
        case 'd': rc = op_delete(&p, op); break;
        case 'r': rc = op_replace(&p, op); break;
        default: rc = op_move(&p, op); break;
        }
        if (rc) return rc;
    }
    return BV_OK;
}
