/* Private to src/demo/: the built-in word lists and code tables of the demo generator. */
#ifndef BEVAN_DEMO_INTERNAL_H
#define BEVAN_DEMO_INTERNAL_H

#include <stddef.h>

typedef struct {
    const char *const *items;
    size_t n;
} demo__list;

typedef struct {
    const char *town;
    const char *county;       /* Address.district */
    const char *area;         /* postcode area, e.g. "LS" */
    unsigned max_district;    /* districts 1..max_district are used */
} demo__town;

/* Surnames, most common first (callers skew their draws towards the front). Mixed British,
 * Irish, South Asian, African, Caribbean, Polish and Chinese names; some carry an apostrophe or
 * non-ASCII UTF-8 (O'Brien, Wiśniewski) on purpose, to exercise escaping and string search. */
extern const demo__list demo__surnames;
/* Given names by birth era (0: before 1960, 1: 1960-1989, 2: 1990 on) and sex (0 female, 1 male). */
extern const demo__list demo__given[3][2];
extern const demo__list demo__streets;
extern const demo__town demo__towns[];
extern const size_t demo__n_towns;
extern const demo__list demo__practice_prefix;  /* "Riverside" */
extern const demo__list demo__practice_suffix;  /* "Medical Practice" */

#endif
