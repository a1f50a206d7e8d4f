/* Serialiser. Output goes through an 8 KB staging buffer so the per-token cost is a memcpy, not a
 * bv_buf call. Containers are walked with an explicit stack, so deep trees cannot overflow the C
 * stack. Strings are escaped minimally (RFC 8259 section 7): '"', '\\' and control characters only;
 * '/' and non-ASCII are written as they are, after checking the UTF-8 so we never emit invalid
 * JSON. On any error the buffer is restored to its length before the call. */
#include "bevan/json.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    bv_buf *out;
    size_t n;
    int rc;
    char st[8192];
} wctx;

static void w_flush(wctx *w)
{
    if (w->n && !w->rc) w->rc = bv_buf_append(w->out, w->st, w->n);
    w->n = 0;
}

static inline void w_put(wctx *w, const char *s, size_t n)
{
    if (n <= sizeof w->st - w->n) {
        memcpy(w->st + w->n, s, n);
        w->n += n;
        return;
    }
    w_flush(w);
    if (n >= sizeof w->st) {
        if (!w->rc) w->rc = bv_buf_append(w->out, s, n);
        return;
    }
    memcpy(w->st, s, n);
    w->n = n;
}

static inline void w_putc(wctx *w, char c)
{
    if (w->n == sizeof w->st) w_flush(w);
    w->st[w->n++] = c;
}

static void w_string(wctx *w, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)str, *end = p + len, *run = p;
    w_putc(w, '"');
    while (p < end) {
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            if (jx_swar_special(x)) break;
            p += 8;
        }
        while (p < end && jx_plain[*p]) p++;
        if (p >= end) break;
        unsigned c = *p;
        if (c >= 0x80) {
            size_t n = jx_utf8_seq(p, end);
            if (!n) {
                w->rc = BV_EINVAL;
                return;
            }
            p += n;
            continue;
        }
        w_put(w, (const char *)run, (size_t)(p - run));
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u'; e[2] = '0'; e[3] = '0'; e[4] = hex[c >> 4]; e[5] = hex[c & 15];
            elen = 6;
            break;
        }
        w_put(w, e, elen);
        p++;
        run = p;
    }
    w_put(w, (const char *)run, (size_t)(p - run));
    w_putc(w, '"');
}

static void w_indent(wctx *w, size_t depth)
{
    static const char spaces[] = "                                                                ";
    w_putc(w, '\n');
    size_t n = depth * 2;
    while (n) {
        size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
        w_put(w, spaces, k);
        n -= k;
    }
}

typedef struct {
    const json_value *v;
    size_t i;
} wframe;

/* Writes a scalar or opens a container; returns true if v is a non-empty container to descend. */
static bool w_begin(wctx *w, const json_value *v)
{
    if (!v) {
        w_put(w, "null", 4);
        return false;
    }
    switch (v->type) {
    case JSON_NULL: w_put(w, "null", 4); return false;
    case JSON_FALSE: w_put(w, "false", 5); return false;
    case JSON_TRUE: w_put(w, "true", 4); return false;
    case JSON_NUMBER: w_put(w, v->u.num.text, v->u.num.len); return false;
    case JSON_STRING: w_string(w, v->u.str.s, v->u.str.len); return false;
    case JSON_ARRAY:
        if (!v->u.arr.count) { w_put(w, "[]", 2); return false; }
        w_putc(w, '[');
        return true;
    case JSON_OBJECT:
        if (!v->u.obj.count) { w_put(w, "{}", 2); return false; }
        w_putc(w, '{');
        return true;
    }
    w->rc = BV_EINVAL;  /* corrupt node type */
    return false;
}

int json_write(bv_buf *out, const json_value *v, bool pretty)
{
    wctx w;
    w.out = out;
    w.n = 0;
    w.rc = BV_OK;
    size_t start_len = out->len;
    wframe local[64], *stk = local;
    size_t depth = 0, cap = sizeof local / sizeof local[0];

    if (w_begin(&w, v)) {
        stk[depth++] = (wframe){v, 0};
    }
    while (depth && !w.rc) {
        wframe *f = &stk[depth - 1];
        const json_value *c = f->v;
        bool obj = c->type == JSON_OBJECT;
        size_t count = obj ? c->u.obj.count : c->u.arr.count;
        if (f->i == count) {
            depth--;
            if (pretty) w_indent(&w, depth);
            w_putc(&w, obj ? '}' : ']');
            continue;
        }
        if (f->i) w_putc(&w, ',');
        if (pretty) w_indent(&w, depth);
        const json_value *child;
        if (obj) {
            const json_member *m = &c->u.obj.members[f->i];
            w_string(&w, m->key, m->key_len);
            if (pretty) w_put(&w, ": ", 2);
            else w_putc(&w, ':');
            child = m->value;
        } else {
            child = c->u.arr.items[f->i];
        }
        f->i++;
        if (w_begin(&w, child)) {
            if (depth == cap) {
                cap *= 2;
                if (stk == local) {
                    stk = bv_malloc(cap * sizeof *stk);
                    memcpy(stk, local, sizeof local);
                } else {
                    stk = bv_realloc(stk, cap * sizeof *stk);
                }
            }
            stk[depth++] = (wframe){child, 0};
        }
    }
    if (stk != local) free(stk);
    w_flush(&w);
    if (w.rc) {
        out->len = start_len;
        if (out->data) out->data[start_len] = '\0';
    }
    return w.rc;
}

int json_write_string(bv_buf *out, const char *s, size_t len)
{
    wctx w;
    w.out = out;
    w.n = 0;
    w.rc = BV_OK;
    size_t start_len = out->len;
    w_string(&w, s ? s : "", s ? len : 0);
    w_flush(&w);
    if (w.rc) {
        out->len = start_len;
        if (out->data) out->data[start_len] = '\0';
    }
    return w.rc;
}
