/* libFuzzer target for the batch/transaction Bundle processor against a temporary store: the input
 * is the Bundle JSON, processed as POST /fhir would (bv_api_process_bundle).
 * Invariants: no crash or sanitizer report; never a 500; the response is JSON (a Bundle on 200, an
 * OperationOutcome otherwise); a transaction that is not answered 200 stores nothing (the store's
 * last committed seq does not move). */
#define _GNU_SOURCE /* memmem */
#include "fuzz_store_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    bv_api *api = fz_env();
    bool is_tx = memmem(data, size, "\"transaction\"", 13) != NULL;
    int64_t before = bv_store_last_seq(fz_store);
    bv_buf out;
    bv_buf_init(&out, 0);
    int status = bv_api_process_bundle(api, (const char *)data, size, &out, NULL);
    fz_check_response(status, out.data ? out.data : "", out.len);
    /* A failed transaction stores nothing. (A batch may store some entries; a document "transaction"
     * string elsewhere makes is_tx a guess, so only the failing case is checked.) */
    if (is_tx && status != 200 && memmem(data, size, "\"batch\"", 7) == NULL && bv_store_last_seq(fz_store) != before) {
        fprintf(stderr, "fuzz: a failed transaction (%d) stored something\n", status);
        abort();
    }
    bv_buf_free(&out);
    return 0;
}
