/* Private to src/http: the WebSocket hub (ws.c). No MHD or OpenSSL types here, so unit tests can
 * call the frame parser and the handshake check directly. */
#ifndef BEVAN_HTTP_WS_INTERNAL_H
#define BEVAN_HTTP_WS_INTERNAL_H

#include "bevan/http.h"

typedef struct bv__ws_hub bv__ws_hub;

/* close_fn closes an adopted socket through its owner (MHD_upgrade_action CLOSE). */
bv__ws_hub *bv__ws_hub_new(const bv_ws_handler *h, void (*close_fn)(void *handle));
/* Closes every connection (status 1001 going away) and joins the I/O thread; an upgrade adopted
 * after this is closed at once. bv__ws_hub_free (after the HTTP daemon has stopped) frees it. */
void bv__ws_hub_stop(bv__ws_hub *hub);
void bv__ws_hub_free(bv__ws_hub *hub);
/* True when another connection would exceed BV_WS_MAX_CONNECTIONS. */
bool bv__ws_hub_full(bv__ws_hub *hub);
/* Takes over an upgraded socket; extra = bytes already read after the handshake. */
void bv__ws_adopt(bv__ws_hub *hub, int fd, void *handle, const char *extra, size_t n_extra, const char *authorization,
                  const char *peer);

/* Checks a WebSocket opening handshake (RFC 6455 4.2.1). Returns 0 and the Sec-WebSocket-Accept
 * value (accept >= 32 bytes), or an HTTP status (400, 426) with *msg. */
int bv__ws_handshake(const bv_request *r, char *accept, size_t accept_len, const char **msg);

/* One frame header parsed from the start of buf. */
typedef struct {
    bool fin;
    unsigned opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t len;             /* payload length */
    size_t header_len;        /* bytes before the payload */
} bv__ws_frame;

/* Parses a client frame header. Returns 1 when complete (f filled), 0 when more bytes are needed,
 * or a negative RFC 6455 close code (-1002 protocol error, -1009 too big) for an invalid frame. */
int bv__ws_parse_header(const uint8_t *buf, size_t len, size_t max_payload, bv__ws_frame *f);
/* Writes a server frame header (unmasked, FIN set) for opcode and len into out (>= 10 bytes);
 * returns its length. */
size_t bv__ws_frame_header(uint8_t *out, unsigned opcode, uint64_t len);

#endif
