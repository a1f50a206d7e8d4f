/* Bevan demo data: a synthetic UK primary-care population as FHIR R4 transaction Bundles.
 *
 * The generator writes JSON text only; it never touches the store. `bevan demo` feeds each Bundle
 * to the server's own transaction processing, so demo data goes through the same validation,
 * reference rewriting and indexing as any client's data. What is generated, which codes and
 * identifier systems are used (all identifiers are synthetic) and how fast: docs/demo-data.md.
 *
 * Deterministic: the same options give byte-identical output on every run and machine (integer
 * arithmetic only, dates relative to a fixed reference date, 2026-01-01, never the wall clock). */
#ifndef BEVAN_DEMO_H
#define BEVAN_DEMO_H

#include <stddef.h>
#include <stdint.h>

/* Most patients one call will generate: the synthetic NHS numbers come from the range NHS
 * England reserves for testing (999 000 0000 - 999 999 9999), which holds ~909,000 valid numbers
 * and every patient gets a different one. */
#define BV_DEMO_MAX_PATIENTS  900000u
#define BV_DEMO_MAX_PRACTICES 50u
#define BV_DEMO_MAX_WARD      1000u

typedef struct {
    uint64_t seed;        /* any value; different seeds give different populations */
    unsigned patients;    /* 0..BV_DEMO_MAX_PATIENTS */
    unsigned practices;   /* GP practices; 0 = patients/500 + 1; values above 50 are capped at 50 */
    /* Virtual ward (docs/ward.md): ward_patients more adults, each enrolled (CarePlan) in the ward
     * CareTeam/demo-ward-1 with 14 days of home readings ending at ward_now_ms (0 = 2026-01-01T12:00Z;
     * `bevan demo` passes the ward clock so the board looks live). Patient k: 0 deteriorating slowly,
     * 1 silent hypoxia (low SpO2, normal pulse), 2 on NEWS2 Scale 2, 3 stopped sending readings; then
     * every 10th from 4 deteriorating and from 7 stopped; the rest stable. */
    unsigned ward_patients;
    int64_t ward_now_ms;
} bv_demo_options;

/* Calls emit(ctx, json, len) once per transaction Bundle (JSON text, valid FHIR R4). First the
 * shared bundle (Organizations for GP practices, Practitioners, PractitionerRoles, Locations),
 * then one bundle per patient. Deterministic for a seed. Returns 0, or emit's non-zero return.
 *
 * - Shared bundle: PUT entries with fixed ids (Organization/demo-org-N, Location/demo-loc-N,
 *   Practitioner/demo-prac-N, PractitionerRole/demo-role-N), so importing twice is idempotent.
 * - Patient bundles: POST entries with urn:uuid fullUrls and references between them (the
 *   transaction rewrites them); the Patient entry carries
 *   ifNoneExist "identifier=https://fhir.nhs.uk/Id/nhs-number|<nhs>" so re-importing the same seed
 *   does not duplicate patients. References to practices and staff are literal
 *   ("Organization/demo-org-3"), so the shared bundle must be imported first.
 *
 * json points into a buffer owned by the generator; it is valid only during the call (copy it
 * to keep it). json is NUL-terminated; len excludes the NUL.
 * Returns BV_EINVAL (core.h) if opt or emit is NULL or opt->patients > BV_DEMO_MAX_PATIENTS. */
int bv_demo_generate(const bv_demo_options *opt,
                     int (*emit)(void *ctx, const char *json, size_t len), void *ctx);

#endif
