/* Bevan web: the clinician ward board and the patient page, static files served at /web/
 * (see docs/web.md). They are public (no token for the HTML/JS itself): the pages sign in
 * themselves (SMART App Launch, authorization code + PKCE) when the server advertises an
 * authorization endpoint, and every FHIR call they make carries that token. */
#ifndef BEVAN_WEB_H
#define BEVAN_WEB_H

#include "bevan/core.h"
#include "bevan/http.h"

#define BV_WEB_PREFIX      "/web"
#define BV_WEB_MAX_FILE    (4u * 1024u * 1024u)

typedef struct bv_web bv_web;

/* dir: the folder holding board.html etc. NULL = "web" next to the executable (the build copies
 * web/ and the uPlot files there), else "../web" from it (a source checkout). NULL result when
 * no such folder exists (the pages are then not served; the API is unaffected). */
bv_web *bv_web_new(const char *dir);
void bv_web_free(bv_web *w);
const char *bv_web_dir(const bv_web *w);
/* Serves GET/HEAD under /web/; true when the path was under /web (resp filled). */
bool bv_web_handle(bv_web *w, bv_request *req, bv_response *resp);

#endif
