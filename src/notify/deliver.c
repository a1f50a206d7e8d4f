/* rest-hook HTTP requests with libcurl (its headers stay in this file). One handle per client,
 * reused so that connections to a receiver are kept alive between notifications. */
#include <stdatomic.h>

#include "internal.h"

#include <curl/curl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bv__http_client {
    CURL *h;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

bv__http_client *bv__http_client_new(void)
{
    pthread_once(&curl_once, curl_init_once);
    bv__http_client *c = bv_calloc(1, sizeof *c);
    c->h = curl_easy_init();
    if (!c->h) bv_panic("notify: curl_easy_init failed");
    return c;
}

void bv__http_client_free(bv__http_client *c)
{
    if (!c) return;
    curl_easy_cleanup(c->h);
    free(c);
}

static size_t discard_cb(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    size_t *total = ud;
    *total += size * n;
    return *total > (1u << 20) ? 0 : size * n;   /* a receiver's answer body is not needed */
}

static int progress_cb(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    (void)dlt; (void)dln; (void)ult; (void)uln;
    const atomic_bool *abort_flag = ud;
    return abort_flag && atomic_load(abort_flag) ? 1 : 0;
}

int bv__http_deliver(bv__http_client *c, const bv__delivery *d, char *why, size_t whylen)
{
    CURL *h = c->h;
    curl_easy_reset(h);
    struct curl_slist *hs = NULL;
    for (size_t i = 0; i < d->n_headers; i++) hs = curl_slist_append(hs, d->headers[i]);
    if (d->body) hs = curl_slist_append(hs, "Content-Type: application/fhir+json; charset=utf-8");
    hs = curl_slist_append(hs, "Expect:");
    hs = curl_slist_append(hs, "User-Agent: Bevan-Subscriptions/1");
    size_t got = 0;
    curl_easy_setopt(h, CURLOPT_URL, d->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)d->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)d->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, d->method);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, d->body ? d->body : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(d->body ? d->body_len : 0));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)d->abort);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    else snprintf(why, whylen, "%s", curl_easy_strerror(rc));
    if (rc == CURLE_OK && (status < 200 || status > 299)) snprintf(why, whylen, "the endpoint answered %ld", status);
    curl_slist_free_all(hs);
    return (int)status;
}
