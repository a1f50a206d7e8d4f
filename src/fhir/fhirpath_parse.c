/* FHIRPath tokenizer and parser (FHIRPath N1 / 2.0 grammar) into an arena-owned AST.
 *
 * Precedence, loosest first: implies; or xor; and; in contains; = ~ != !~; < <= > >=; |;
 * is as; + - &; * / div mod; unary + -; . invocation and [] indexer; terms.
 * Caps: FP_MAX_EXPR_LEN bytes of source and FP_MAX_NESTING levels of nesting, so client-written
 * expressions (FHIRPath Patch) cannot exhaust the stack. */
#include "fhirpath_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    TK_EOF, TK_IDENT, TK_DIDENT, TK_STRING, TK_NUMBER, TK_DATE, TK_DATETIME, TK_TIME,
    TK_EXT, TK_VAR, TK_PUNCT
} tk_kind;

typedef struct {
    tk_kind k;
    const char *s;      /* decoded text (identifier, string, number, date text without '@', punct) */
    size_t pos;
} token;

typedef struct {
    bv_arena *a;
    const char *src;
    size_t len;
    token *toks;
    size_t n, cap, i;
    int depth;
    char *err;
    size_t errlen;
    bool failed;
} parser;

static void perr(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void perr(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed) return;
    p->failed = true;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "%s at offset %zu", msg, pos);
}

/* ---- Tokenizer ---- */

static bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_ident_char(char c) { return is_ident_start(c) || is_digit(c); }

static void push_tok(parser *p, tk_kind k, const char *s, size_t pos)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 32;
        token *nt = bv_arena_alloc(p->a, nc * sizeof *nt);
        if (p->n) memcpy(nt, p->toks, p->n * sizeof *nt);
        p->toks = nt;
        p->cap = nc;
    }
    p->toks[p->n].k = k;
    p->toks[p->n].s = s;
    p->toks[p->n].pos = pos;
    p->n++;
}

static int hexdig(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* Quoted text (string or delimited identifier) starting at src[*i] == q. */
static const char *lex_quoted(parser *p, size_t *i, char q)
{
    size_t start = *i;
    size_t j = start + 1;
    char *out = bv_arena_alloc(p->a, p->len - start + 1);
    size_t o = 0;
    while (j < p->len && p->src[j] != q) {
        char c = p->src[j];
        if (c == '\\') {
            if (j + 1 >= p->len) break;
            char e = p->src[j + 1];
            j += 2;
            switch (e) {
            case 'n': out[o++] = '\n'; break;
            case 'r': out[o++] = '\r'; break;
            case 't': out[o++] = '\t'; break;
            case 'f': out[o++] = '\f'; break;
            case 'u': {
                unsigned cp = 0;
                for (int k = 0; k < 4; k++) {
                    int h = j < p->len ? hexdig(p->src[j]) : -1;
                    if (h < 0) { perr(p, j, "bad \\u escape"); return NULL; }
                    cp = cp * 16 + (unsigned)h;
                    j++;
                }
                /* surrogate pair */
                if (cp >= 0xD800 && cp <= 0xDBFF && j + 5 < p->len && p->src[j] == '\\' && p->src[j + 1] == 'u') {
                    unsigned lo = 0;
                    bool ok = true;
                    for (int k = 0; k < 4; k++) {
                        int h = hexdig(p->src[j + 2 + (size_t)k]);
                        if (h < 0) { ok = false; break; }
                        lo = lo * 16 + (unsigned)h;
                    }
                    if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        j += 6;
                    }
                }
                if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0) { perr(p, j, "bad \\u escape"); return NULL; }
                o += put_utf8(out + o, cp);
                break;
            }
            default: out[o++] = e; break;   /* \' \" \` \\ \/ and anything else: the character itself */
            }
            continue;
        }
        out[o++] = c;
        j++;
    }
    if (j >= p->len) {
        perr(p, start, "unterminated %s", q == '\'' ? "string" : "delimited identifier");
        return NULL;
    }
    out[o] = '\0';
    *i = j + 1;
    return out;
}

static bool two_digits(const char *s, size_t i, size_t len)
{
    return i + 1 < len && is_digit(s[i]) && is_digit(s[i + 1]);
}

/* Time part hh(:mm(:ss(.fff)?)?)? at s[*i]; returns false if no hour. */
static bool lex_time_part(const char *s, size_t len, size_t *i)
{
    size_t j = *i;
    if (!two_digits(s, j, len)) return false;
    j += 2;
    if (j < len && s[j] == ':' && two_digits(s, j + 1, len)) {
        j += 3;
        if (j < len && s[j] == ':' && two_digits(s, j + 1, len)) {
            j += 3;
            if (j + 1 < len && s[j] == '.' && is_digit(s[j + 1])) {
                j++;
                while (j < len && is_digit(s[j])) j++;
            }
        }
    }
    *i = j;
    return true;
}

static void lex_datetime(parser *p, size_t *i)
{
    const char *s = p->src;
    size_t len = p->len, start = *i, j = start + 1;
    if (j < len && s[j] == 'T') {
        j++;
        if (!lex_time_part(s, len, &j)) { perr(p, start, "bad time literal"); return; }
        push_tok(p, TK_TIME, bv_arena_strndup(p->a, s + start + 2, j - start - 2), start);
        *i = j;
        return;
    }
    for (int k = 0; k < 4; k++)
        if (j + (size_t)k >= len || !is_digit(s[j + (size_t)k])) { perr(p, start, "bad date literal"); return; }
    j += 4;
    if (j < len && s[j] == '-' && two_digits(s, j + 1, len)) {
        j += 3;
        if (j < len && s[j] == '-' && two_digits(s, j + 1, len)) j += 3;
    }
    tk_kind k = TK_DATE;
    if (j < len && s[j] == 'T') {
        k = TK_DATETIME;
        j++;
        if (lex_time_part(s, len, &j)) {
            if (j < len && s[j] == 'Z') j++;
            else if (j < len && (s[j] == '+' || s[j] == '-') && two_digits(s, j + 1, len) && j + 3 < len &&
                     s[j + 3] == ':' && two_digits(s, j + 4, len))
                j += 6;
        }
    }
    fp_dt dt;
    const char *text = bv_arena_strndup(p->a, s + start + 1, j - start - 1);
    if (!fp_dt_parse(text, false, &dt)) { perr(p, start, "invalid date/time literal"); return; }
    push_tok(p, k, text, start);
    *i = j;
}

static bool tokenize(parser *p)
{
    const char *s = p->src;
    size_t i = 0, len = p->len;
    while (i < len && !p->failed) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') { i++; continue; }
        if (c == '/' && i + 1 < len && s[i + 1] == '/') {
            while (i < len && s[i] != '\n') i++;
            continue;
        }
        if (c == '/' && i + 1 < len && s[i + 1] == '*') {
            const char *e = NULL;
            for (size_t j = i + 2; j + 1 < len; j++)
                if (s[j] == '*' && s[j + 1] == '/') { e = s + j; break; }
            if (!e) { perr(p, i, "unterminated comment"); return false; }
            i = (size_t)(e - s) + 2;
            continue;
        }
        size_t start = i;
        if (is_ident_start(c)) {
            while (i < len && is_ident_char(s[i])) i++;
            push_tok(p, TK_IDENT, bv_arena_strndup(p->a, s + start, i - start), start);
            continue;
        }
        if (c == '`') {
            const char *t = lex_quoted(p, &i, '`');
            if (!t) return false;
            push_tok(p, TK_DIDENT, t, start);
            continue;
        }
        if (c == '\'') {
            const char *t = lex_quoted(p, &i, '\'');
            if (!t) return false;
            push_tok(p, TK_STRING, t, start);
            continue;
        }
        if (is_digit(c)) {
            while (i < len && is_digit(s[i])) i++;
            if (i + 1 < len && s[i] == '.' && is_digit(s[i + 1])) {
                i++;
                while (i < len && is_digit(s[i])) i++;
            }
            push_tok(p, TK_NUMBER, bv_arena_strndup(p->a, s + start, i - start), start);
            continue;
        }
        if (c == '@') { lex_datetime(p, &i); continue; }
        if (c == '%') {
            i++;
            const char *name = NULL;
            if (i < len && is_ident_start(s[i])) {
                size_t b = i;
                while (i < len && is_ident_char(s[i])) i++;
                name = bv_arena_strndup(p->a, s + b, i - b);
            } else if (i < len && (s[i] == '`' || s[i] == '\'')) {
                name = lex_quoted(p, &i, s[i]);
                if (!name) return false;
            } else {
                perr(p, start, "bad external constant");
                return false;
            }
            push_tok(p, TK_EXT, name, start);
            continue;
        }
        if (c == '$') {
            i++;
            size_t b = i;
            while (i < len && is_ident_char(s[i])) i++;
            const char *name = bv_arena_strndup(p->a, s + b, i - b);
            if (strcmp(name, "this") != 0 && strcmp(name, "index") != 0 && strcmp(name, "total") != 0) {
                perr(p, start, "unknown variable $%s", name);
                return false;
            }
            push_tok(p, TK_VAR, name, start);
            continue;
        }
        static const char *const two[] = {"!=", "!~", "<=", ">="};
        bool done = false;
        for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
            if (i + 1 < len && s[i] == two[k][0] && s[i + 1] == two[k][1]) {
                push_tok(p, TK_PUNCT, two[k], start);
                i += 2;
                done = true;
                break;
            }
        if (done) continue;
        static const char ones[] = "()[]{}.,+-*/&|=~<>";
        const char *f = strchr(ones, c);
        if (c && f) {
            push_tok(p, TK_PUNCT, bv_arena_strndup(p->a, s + i, 1), start);
            i++;
            continue;
        }
        char ch[2] = {c, 0};
        perr(p, i, "unexpected character '%s'", ch);
        return false;
    }
    if (p->failed) return false;
    push_tok(p, TK_EOF, "", len);
    return true;
}

/* ---- Parser ---- */

static token *peek(parser *p) { return &p->toks[p->i]; }
static token *peek2(parser *p) { return &p->toks[p->i + 1 < p->n ? p->i + 1 : p->i]; }
static bool is_punct(const token *t, const char *s) { return t->k == TK_PUNCT && strcmp(t->s, s) == 0; }
static bool is_kw(const token *t, const char *s) { return t->k == TK_IDENT && strcmp(t->s, s) == 0; }

static fp_node *new_node(parser *p, fp_ntype t)
{
    fp_node *n = bv_arena_calloc(p->a, 1, sizeof *n);
    n->t = t;
    n->fn = -1;
    return n;
}

static fp_node *parse_expr(parser *p, int level);

static bool expect(parser *p, const char *punct)
{
    if (is_punct(peek(p), punct)) { p->i++; return true; }
    perr(p, peek(p)->pos, "expected '%s'", punct);
    return false;
}

/* Identifier token (plain, delimited, or a keyword usable as one) at the cursor. */
static bool ident_token(const token *t) { return t->k == TK_IDENT || t->k == TK_DIDENT; }

static bool resolve_typespec(parser *p, fp_typespec *ts, size_t pos)
{
    if (!fp_typespec_known(ts)) {
        perr(p, pos, "unknown type '%s'", ts->name);
        return false;
    }
    return true;
}

/* qualifiedIdentifier after is/as */
static bool parse_typespec(parser *p, fp_typespec *ts)
{
    token *t = peek(p);
    if (!ident_token(t)) { perr(p, t->pos, "expected a type name"); return false; }
    size_t pos = t->pos;
    p->i++;
    ts->ns = FP_NS_ANY;
    ts->name = t->s;
    if (is_punct(peek(p), ".") && ident_token(peek2(p))) {
        if (strcmp(t->s, "FHIR") == 0) ts->ns = FP_NS_FHIR;
        else if (strcmp(t->s, "System") == 0) ts->ns = FP_NS_SYSTEM;
        else { perr(p, pos, "unknown type namespace '%s'", t->s); return false; }
        p->i++;
        ts->name = peek(p)->s;
        p->i++;
    }
    return resolve_typespec(p, ts, pos);
}

bool fp_typespec_from_node(const fp_node *n, fp_typespec *ts)
{
    if (!n) return false;
    if (n->t == FPN_IDENT) {
        ts->ns = FP_NS_ANY;
        ts->name = n->name;
        return true;
    }
    if (n->t == FPN_DOT && n->l && n->l->t == FPN_IDENT && n->r && n->r->t == FPN_IDENT) {
        if (strcmp(n->l->name, "FHIR") == 0) ts->ns = FP_NS_FHIR;
        else if (strcmp(n->l->name, "System") == 0) ts->ns = FP_NS_SYSTEM;
        else return false;
        ts->name = n->r->name;
        return true;
    }
    return false;
}

static fp_node *make_ident(parser *p, const token *t)
{
    fp_node *n = new_node(p, FPN_IDENT);
    n->name = t->s;
    const char *nm = t->s;
    n->is_type_name = nm[0] >= 'A' && nm[0] <= 'Z' && fhir_type_find(nm) != NULL;
    return n;
}

/* function call: name already consumed, cursor at '(' */
static fp_node *parse_call(parser *p, const token *name)
{
    fp_node *n = new_node(p, FPN_FUNC);
    n->name = name->s;
    p->i++;   /* '(' */
    fp_node *argv[16];
    int argc = 0;
    if (!is_punct(peek(p), ")")) {
        for (;;) {
            if (argc == 16) { perr(p, peek(p)->pos, "too many arguments"); return NULL; }
            fp_node *a = parse_expr(p, 0);
            if (!a) return NULL;
            argv[argc++] = a;
            if (is_punct(peek(p), ",")) { p->i++; continue; }
            break;
        }
    }
    if (!expect(p, ")")) return NULL;
    n->nargs = argc;
    if (argc) {
        n->args = bv_arena_alloc(p->a, (size_t)argc * sizeof *n->args);
        memcpy(n->args, argv, (size_t)argc * sizeof *argv);
    }
    n->fn = fp_function_find(n->name);
    if (n->fn < 0) { perr(p, name->pos, "unknown function '%s'", n->name); return NULL; }
    const fp_function *f = &fp_functions[n->fn];
    if (argc < f->min_args || argc > f->max_args) {
        perr(p, name->pos, "wrong number of arguments to %s()", n->name);
        return NULL;
    }
    if (strcmp(n->name, "is") == 0 || strcmp(n->name, "as") == 0 || strcmp(n->name, "ofType") == 0) {
        if (!fp_typespec_from_node(n->args[0], &n->ts)) {
            perr(p, name->pos, "%s() needs a type name", n->name);
            return NULL;
        }
        if (!resolve_typespec(p, &n->ts, name->pos)) return NULL;
    }
    return n;
}

static const char *const reserved_terms[] = {"and", "or", "xor", "implies", "div", "mod"};

static fp_node *parse_term(parser *p)
{
    token *t = peek(p);
    fp_node *n;
    switch (t->k) {
    case TK_NUMBER: {
        p->i++;
        n = new_node(p, FPN_LIT);
        int64_t iv;
        bool is_int = strchr(t->s, '.') == NULL && bv_str_to_i64(t->s, strlen(t->s), &iv) == BV_OK;
        double dv = strtod(t->s, NULL);   /* validated digits[.digits] */
        int prec = fp_decimal_prec(t->s);
        token *u = peek(p);
        const char *cal = NULL;
        if (u->k == TK_STRING) {
            p->i++;
            n->lit = fp_mk_qty(dv, prec, u->s, false);
        } else if (u->k == TK_IDENT && fp_calendar_word(u->s, strlen(u->s), &cal)) {
            p->i++;
            n->lit = fp_mk_qty(dv, prec, u->s, true);
        } else if (is_int) {
            n->lit = fp_mk_int(iv);
        } else {
            n->lit = fp_mk_dec(dv, prec);
            n->lit.str = t->s;
        }
        return n;
    }
    case TK_STRING:
        p->i++;
        n = new_node(p, FPN_LIT);
        n->lit = fp_mk_str(t->s);
        return n;
    case TK_DATE: case TK_DATETIME: case TK_TIME:
        p->i++;
        n = new_node(p, FPN_LIT);
        n->lit.kind = t->k == TK_DATE ? BV_FP_DATE : t->k == TK_TIME ? BV_FP_TIME : BV_FP_DATETIME;
        n->lit.str = t->s;
        return n;
    case TK_EXT:
        p->i++;
        n = new_node(p, FPN_EXT);
        n->name = t->s;
        return n;
    case TK_VAR:
        p->i++;
        n = new_node(p, strcmp(t->s, "this") == 0 ? FPN_THIS : strcmp(t->s, "index") == 0 ? FPN_INDEXVAR : FPN_TOTAL);
        return n;
    case TK_PUNCT:
        if (is_punct(t, "(")) {
            p->i++;
            n = parse_expr(p, 0);
            if (!n || !expect(p, ")")) return NULL;
            return n;
        }
        if (is_punct(t, "{")) {
            p->i++;
            if (!expect(p, "}")) return NULL;
            return new_node(p, FPN_EMPTY);
        }
        perr(p, t->pos, "unexpected '%s'", t->s);
        return NULL;
    case TK_IDENT:
    case TK_DIDENT:
        if (t->k == TK_IDENT) {
            for (size_t k = 0; k < sizeof reserved_terms / sizeof reserved_terms[0]; k++)
                if (strcmp(t->s, reserved_terms[k]) == 0) { perr(p, t->pos, "unexpected '%s'", t->s); return NULL; }
            if (!is_punct(peek2(p), "(") && (strcmp(t->s, "true") == 0 || strcmp(t->s, "false") == 0)) {
                p->i++;
                n = new_node(p, FPN_LIT);
                n->lit = fp_mk_bool(t->s[0] == 't');
                return n;
            }
        }
        p->i++;
        if (t->k == TK_IDENT && is_punct(peek(p), "(")) return parse_call(p, t);
        return make_ident(p, t);
    case TK_EOF:
        perr(p, t->pos, "unexpected end of expression");
        return NULL;
    }
    perr(p, t->pos, "unexpected token");
    return NULL;
}

/* Static check: after `x as T`, x.as(T) or x.ofType(T) with T a FHIR complex type or resource,
 * `.name` must be an element of T ((Observation.value as Period).unit is a semantic error). */
static bool typed_member_ok(parser *p, const fp_node *left, const token *id)
{
    const fp_typespec *ts = NULL;
    if (left->t == FPN_AS) ts = &left->ts;
    else if (left->t == FPN_DOT && left->r->t == FPN_FUNC &&
             (strcmp(left->r->name, "as") == 0 || strcmp(left->r->name, "ofType") == 0))
        ts = &left->r->ts;
    if (!ts || ts->ns == FP_NS_SYSTEM) return true;
    const fhir_type *t = fhir_type_find(ts->name);
    if (!t || t->kind == FHIR_KIND_PRIMITIVE || t->first_element < 0) return true;
    for (uint16_t k = 0; k < t->n_elements; k++)
        if (strcmp(fhir_elements[t->first_element + k].name, id->s) == 0) return true;
    perr(p, id->pos, "type %s has no element '%s'", t->name, id->s);
    return false;
}

static fp_node *parse_postfix(parser *p)
{
    fp_node *n = parse_term(p);
    while (n && !p->failed) {
        token *t = peek(p);
        if (is_punct(t, ".")) {
            p->i++;
            token *id = peek(p);
            if (!ident_token(id)) { perr(p, id->pos, "expected a name after '.'"); return NULL; }
            p->i++;
            fp_node *r;
            if (id->k == TK_IDENT && is_punct(peek(p), "(")) r = parse_call(p, id);
            else if (!typed_member_ok(p, n, id)) return NULL;
            else r = make_ident(p, id);
            if (!r) return NULL;
            fp_node *d = new_node(p, FPN_DOT);
            d->l = n;
            d->r = r;
            n = d;
        } else if (is_punct(t, "[")) {
            p->i++;
            fp_node *ix = parse_expr(p, 0);
            if (!ix || !expect(p, "]")) return NULL;
            fp_node *d = new_node(p, FPN_INDEX);
            d->l = n;
            d->r = ix;
            n = d;
        } else {
            break;
        }
    }
    return n;
}

static fp_node *parse_unary(parser *p)
{
    token *t = peek(p);
    if (is_punct(t, "-") || is_punct(t, "+")) {
        if (++p->depth > FP_MAX_NESTING) { perr(p, t->pos, "expression nested too deeply"); return NULL; }
        p->i++;
        fp_node *e = parse_unary(p);
        p->depth--;
        if (!e) return NULL;
        if (t->s[0] == '+') {
            fp_node *n = new_node(p, FPN_POS);
            n->l = e;
            return n;
        }
        if (e->t == FPN_LIT && (e->lit.kind == BV_FP_INTEGER || e->lit.kind == BV_FP_DECIMAL ||
                                e->lit.kind == BV_FP_QUANTITY)) {
            if (e->lit.kind == BV_FP_INTEGER) e->lit.i = -e->lit.i;
            else {
                e->lit.d = -e->lit.d;
                if (e->lit.str && e->lit.kind == BV_FP_DECIMAL) e->lit.str = bv_arena_printf(p->a, "-%s", e->lit.str);
            }
            return e;
        }
        fp_node *n = new_node(p, FPN_NEG);
        n->l = e;
        return n;
    }
    return parse_postfix(p);
}

/* binary operator at the cursor for a precedence level; -1 if none */
static int binop_at(parser *p, int level)
{
    token *t = peek(p);
    switch (level) {
    case 0: return is_kw(t, "implies") ? FPO_IMPLIES : -1;
    case 1: return is_kw(t, "or") ? FPO_OR : is_kw(t, "xor") ? FPO_XOR : -1;
    case 2: return is_kw(t, "and") ? FPO_AND : -1;
    case 3: return is_kw(t, "in") ? FPO_IN : is_kw(t, "contains") ? FPO_CONTAINS : -1;
    case 4: return is_punct(t, "=") ? FPO_EQ : is_punct(t, "~") ? FPO_EQUIV : is_punct(t, "!=") ? FPO_NE
                 : is_punct(t, "!~") ? FPO_NEQUIV : -1;
    case 5: return is_punct(t, "<") ? FPO_LT : is_punct(t, "<=") ? FPO_LE : is_punct(t, ">") ? FPO_GT
                 : is_punct(t, ">=") ? FPO_GE : -1;
    case 6: return is_punct(t, "|") ? FPO_UNION : -1;
    case 8: return is_punct(t, "+") ? FPO_ADD : is_punct(t, "-") ? FPO_SUB : is_punct(t, "&") ? FPO_CONCAT : -1;
    case 9: return is_punct(t, "*") ? FPO_MUL : is_punct(t, "/") ? FPO_DIV : is_kw(t, "div") ? FPO_IDIV
                 : is_kw(t, "mod") ? FPO_MOD : -1;
    default: return -1;
    }
}

static fp_node *parse_expr(parser *p, int level)
{
    if (p->failed) return NULL;
    if (level > 9) return parse_unary(p);
    if (level == 0 && ++p->depth > FP_MAX_NESTING) {
        perr(p, peek(p)->pos, "expression nested too deeply");
        return NULL;
    }
    fp_node *l = parse_expr(p, level + 1);
    while (l && !p->failed) {
        if (level == 7) {
            token *t = peek(p);
            if (is_kw(t, "is") || is_kw(t, "as")) {
                p->i++;
                fp_node *n = new_node(p, t->s[0] == 'i' ? FPN_IS : FPN_AS);
                n->l = l;
                if (!parse_typespec(p, &n->ts)) { l = NULL; break; }
                l = n;
                continue;
            }
            break;
        }
        int op = binop_at(p, level);
        if (op < 0) break;
        p->i++;
        fp_node *r = parse_expr(p, level + 1);
        if (!r) { l = NULL; break; }
        fp_node *n = new_node(p, FPN_BIN);
        n->op = (fp_op)op;
        n->l = l;
        n->r = r;
        l = n;
    }
    if (level == 0) p->depth--;
    return p->failed ? NULL : l;
}

/* The nesting cap counts entries into parse_expr(0) (the whole expression, each parenthesis,
 * argument and indexer) and unary operators; each such level recurses through at most 11
 * precedence functions, so the C stack stays small. Operator chains (a + b + c ...) loop. */
fp_node *fp_parse(bv_arena *a, const char *src, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!src) {
        if (err && errlen) snprintf(err, errlen, "no expression");
        return NULL;
    }
    size_t len = strlen(src);
    if (len > FP_MAX_EXPR_LEN) {
        if (err && errlen) snprintf(err, errlen, "expression longer than %d bytes", FP_MAX_EXPR_LEN);
        return NULL;
    }
    parser p = {.a = a, .src = src, .len = len, .err = err, .errlen = errlen};
    if (!tokenize(&p)) return NULL;
    if (p.toks[0].k == TK_EOF) {
        perr(&p, 0, "empty expression");
        return NULL;
    }
    fp_node *root = parse_expr(&p, 0);
    if (!root || p.failed) return NULL;
    if (peek(&p)->k != TK_EOF) {
        perr(&p, peek(&p)->pos, "unexpected '%s'", peek(&p)->s);
        return NULL;
    }
    return root;
}

bv_fp_expr *bv_fhirpath_compile(bv_arena *a, const char *expr, char *err, size_t errlen)
{
    fp_node *root = fp_parse(a, expr, err, errlen);
    if (!root) return NULL;
    bv_fp_expr *e = bv_arena_alloc(a, sizeof *e);
    e->root = root;
    e->src = bv_arena_strdup(a, expr);
    return e;
}

static bool str_equal(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

bool fp_node_equal(const fp_node *a, const fp_node *b)
{
    if (a == b) return true;
    if (!a || !b || a->t != b->t || a->op != b->op || a->fn != b->fn || a->nargs != b->nargs ||
        a->is_type_name != b->is_type_name || !str_equal(a->name, b->name) || a->ts.ns != b->ts.ns ||
        !str_equal(a->ts.name, b->ts.name))
        return false;
    if (a->t == FPN_LIT && (a->lit.kind != b->lit.kind || !str_equal(a->lit.str, b->lit.str) || a->lit.i != b->lit.i ||
                            a->lit.d != b->lit.d || a->lit.prec != b->lit.prec || a->lit.calendar != b->lit.calendar))
        return false;
    for (int k = 0; k < a->nargs; k++)
        if (!fp_node_equal(a->args[k], b->args[k])) return false;
    return fp_node_equal(a->l, b->l) && fp_node_equal(a->r, b->r);
}
