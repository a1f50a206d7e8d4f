/* OperationOutcome: an arena-backed list of issues and its R4 JSON form. */
#include "bevan/fhir.h"

#include <stdio.h>
#include <string.h>

void bv_outcome_init(bv_outcome *oo, bv_arena *a)
{
    memset(oo, 0, sizeof *oo);
    oo->arena = a;
}

/* Formats into the arena (vsnprintf twice: measure, then write). */
static char *arena_vprintf(bv_arena *a, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static char *arena_vprintf(bv_arena *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return bv_arena_strdup(a, "");
    char *s = bv_arena_alloc(a, (size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

void bv_outcome_add(bv_outcome *oo, bv_severity sev, const char *code, const char *expression,
                    const char *fmt, ...)
{
    if (oo->n == oo->cap) {
        size_t cap = oo->cap ? oo->cap * 2 : 8;
        bv_issue *is = bv_arena_alloc(oo->arena, cap * sizeof *is);
        if (oo->n) memcpy(is, oo->issues, oo->n * sizeof *is);
        oo->issues = is;
        oo->cap = cap;
    }
    bv_issue *is = &oo->issues[oo->n++];
    is->severity = sev;
    /* Copies: callers may pass stack buffers (validation paths). */
    is->code = bv_arena_strdup(oo->arena, code ? code : "processing");
    is->expression = expression ? bv_arena_strdup(oo->arena, expression) : NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        is->diagnostics = arena_vprintf(oo->arena, fmt, ap);
        va_end(ap);
    } else {
        is->diagnostics = NULL;
    }
    if (sev == BV_SEV_FATAL || sev == BV_SEV_ERROR) oo->n_errors++;
}

static const char *severity_code(bv_severity s)
{
    switch (s) {
    case BV_SEV_FATAL: return "fatal";
    case BV_SEV_ERROR: return "error";
    case BV_SEV_WARNING: return "warning";
    case BV_SEV_INFORMATION: return "information";
    }
    return "error";
}

json_value *bv_outcome_to_json(const bv_outcome *oo)
{
    bv_arena *a = oo->arena;
    json_value *root = json_new(a, JSON_OBJECT);
    json_set(a, root, "resourceType", json_new_string(a, "OperationOutcome"));
    json_value *issues = json_new(a, JSON_ARRAY);
    if (oo->n == 0) {
        json_value *is = json_new(a, JSON_OBJECT);
        json_set(a, is, "severity", json_new_string(a, "information"));
        json_set(a, is, "code", json_new_string(a, "informational"));
        json_set(a, is, "diagnostics", json_new_string(a, "All OK"));
        json_push(a, issues, is);
    }
    for (size_t i = 0; i < oo->n; i++) {
        const bv_issue *src = &oo->issues[i];
        json_value *is = json_new(a, JSON_OBJECT);
        json_set(a, is, "severity", json_new_string(a, severity_code(src->severity)));
        json_set(a, is, "code", json_new_string(a, src->code ? src->code : "processing"));
        if (src->diagnostics && src->diagnostics[0])
            json_set(a, is, "diagnostics", json_new_string(a, src->diagnostics));
        if (src->expression && src->expression[0]) {
            json_value *ex = json_new(a, JSON_ARRAY);
            json_push(a, ex, json_new_string(a, src->expression));
            json_set(a, is, "expression", ex);
        }
        json_push(a, issues, is);
    }
    json_set(a, root, "issue", issues);
    return root;
}
