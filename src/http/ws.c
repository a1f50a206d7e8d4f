/* WebSocket (RFC 6455) connections of the HTTP module: handshake check, frame parsing, and one
 * I/O thread that reads every upgraded socket (poll), reassembles messages and hands text to the
 * application (see include/bevan/http.h). Writes come from any thread under a per-connection
 * mutex with MSG_DONTWAIT: a peer that does not read is closed, a writer never waits on it.
 * SHA-1 for the accept key comes from OpenSSL's libcrypto; its headers stay in this file. */
#include "ws_internal.h"
#include "bevan/json.h"

#include <openssl/sha.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_READ_CHUNK 16384

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

struct bv_ws {
    bv__ws_hub *hub;
    int fd;
    void *handle;              /* MHD upgrade handle, closed through hub->close_fn */
    pthread_mutex_t wmu;       /* one writer at a time */
    atomic_bool closing;       /* close requested (app, protocol error, slow peer) */
    atomic_uint close_code;
    bool close_sent;
    bool opened;               /* on_open called */
    uint8_t *rbuf;             /* raw bytes not yet parsed */
    size_t rlen, rcap;
    bv_buf msg;                /* message being reassembled */
    bool in_msg;
    int64_t last_rx_ms, last_ping_ms;
    char *authorization;
    char peer[64];
    void *user;
    struct bv_ws *next;
};

struct bv__ws_hub {
    bv_ws_handler h;
    void (*close_fn)(void *handle);
    pthread_mutex_t mu;
    bv_ws *conns;              /* all live connections (the I/O thread owns and frees them) */
    unsigned n;
    int wake[2];
    pthread_t thread;
    bool stopping;
    bool stopped;              /* the I/O thread has ended: adopt closes at once */
};

static int64_t mono_ms(void) { return bv_mono_ns() / 1000000; }

static void hub_wake(bv__ws_hub *hub)
{
    char c = 1;
    ssize_t r = write(hub->wake[1], &c, 1);
    (void)r;   /* a full pipe already means "wake up" */
}

/* ---------------------------------------------------------------- handshake */

static void base64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < outlen; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Does a comma-separated header value contain token (case-insensitive)? */
static bool has_token(const char *v, const char *token)
{
    if (!v) return false;
    size_t tl = strlen(token);
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && (p[m - 1] == ' ' || p[m - 1] == '\t')) m--;
        if (m == tl && strncasecmp(p, token, tl) == 0) return true;
        p += n;
    }
    return false;
}

int bv__ws_handshake(const bv_request *r, char *accept, size_t accept_len, const char **msg)
{
    if (!bv_streq(r->method, "GET")) { *msg = "the WebSocket endpoint takes GET with an Upgrade handshake"; return 400; }
    if (!has_token(bv_request_header(r, "Upgrade"), "websocket") ||
        !has_token(bv_request_header(r, "Connection"), "upgrade")) {
        *msg = "this is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade";
        return 426;
    }
    const char *ver = bv_request_header(r, "Sec-WebSocket-Version");
    if (!ver || strcmp(ver, "13") != 0) { *msg = "unsupported Sec-WebSocket-Version (13 only)"; return 426; }
    const char *key = bv_request_header(r, "Sec-WebSocket-Key");
    size_t dlen = 0;
    if (!key || strlen(key) != 24 || !bv_base64_decode(r->arena, key, strlen(key), &dlen) || dlen != 16) {
        *msg = "Sec-WebSocket-Key must be 16 bytes in base64";
        return 400;
    }
    char cat[24 + sizeof WS_GUID];
    memcpy(cat, key, 24);
    memcpy(cat + 24, WS_GUID, sizeof WS_GUID);
    uint8_t dig[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, 24 + sizeof WS_GUID - 1, dig);
    base64_encode(dig, sizeof dig, accept, accept_len);
    return 0;
}

/* ---------------------------------------------------------------- frames */

int bv__ws_parse_header(const uint8_t *b, size_t len, size_t max_payload, bv__ws_frame *f)
{
    if (len < 2) return 0;
    memset(f, 0, sizeof *f);
    f->fin = (b[0] & 0x80) != 0;
    if (b[0] & 0x70) return -1002;                 /* RSV bits: no extension was negotiated */
    f->opcode = b[0] & 0x0f;
    f->masked = (b[1] & 0x80) != 0;
    uint64_t l = b[1] & 0x7f;
    size_t h = 2;
    bool control = f->opcode >= 8;
    if (f->opcode != OP_CONT && f->opcode != OP_TEXT && f->opcode != OP_BINARY && f->opcode != OP_CLOSE &&
        f->opcode != OP_PING && f->opcode != OP_PONG)
        return -1002;
    if (control && (!f->fin || l > 125)) return -1002;
    if (l == 126) {
        if (len < 4) return 0;
        l = ((uint64_t)b[2] << 8) | b[3];
        if (l < 126) return -1002;                 /* not the minimal encoding */
        h = 4;
    } else if (l == 127) {
        if (len < 10) return 0;
        if (b[2] & 0x80) return -1002;
        l = 0;
        for (int i = 2; i < 10; i++) l = (l << 8) | b[i];
        if (l < 65536) return -1002;
        h = 10;
    }
    if (!f->masked) return -1002;                  /* client frames are always masked (5.1) */
    if (l > max_payload) return -1009;
    if (len < h + 4) return 0;
    memcpy(f->mask, b + h, 4);
    f->header_len = h + 4;
    f->len = l;
    return 1;
}

size_t bv__ws_frame_header(uint8_t *out, unsigned opcode, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* Sends one whole frame without waiting; any short write closes the connection. */
static int ws_send_frame(bv_ws *ws, unsigned opcode, const void *data, size_t len)
{
    uint8_t hdr[10];
    size_t hl = bv__ws_frame_header(hdr, opcode, len);
    pthread_mutex_lock(&ws->wmu);
    if (ws->close_sent || (atomic_load(&ws->closing) && opcode != OP_CLOSE)) {
        pthread_mutex_unlock(&ws->wmu);
        return BV_EIO;
    }
    struct iovec iov[2] = {{hdr, hl}, {(void *)data, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    size_t want = hl + len;
    ssize_t w;
    do {
        w = sendmsg(ws->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (opcode == OP_CLOSE) ws->close_sent = true;
    pthread_mutex_unlock(&ws->wmu);
    if (w < 0 || (size_t)w != want) {
        /* the peer is gone, or so far behind that its socket buffer is full: drop it */
        if (!atomic_exchange(&ws->closing, true)) {
            atomic_store(&ws->close_code, 1008);
            hub_wake(ws->hub);
        }
        return BV_EIO;
    }
    return BV_OK;
}

int bv_ws_send_text(bv_ws *ws, const char *msg, size_t len)
{
    if (!ws || len > BV_WS_MAX_MESSAGE) return BV_EINVAL;
    return ws_send_frame(ws, OP_TEXT, msg, len);
}

void bv_ws_close(bv_ws *ws, unsigned code)
{
    if (!ws) return;
    if (!atomic_exchange(&ws->closing, true)) {
        atomic_store(&ws->close_code, code ? code : 1000);
        hub_wake(ws->hub);
    }
}

const char *bv_ws_authorization(const bv_ws *ws) { return ws ? ws->authorization : NULL; }
const char *bv_ws_peer(const bv_ws *ws) { return ws ? ws->peer : ""; }
void bv_ws_set_user(bv_ws *ws, void *user) { if (ws) ws->user = user; }
void *bv_ws_user(const bv_ws *ws) { return ws ? ws->user : NULL; }

/* Protocol failure: close with code (the close frame goes out when the hub finalises). */
static void ws_fail(bv_ws *ws, unsigned code)
{
    if (!atomic_exchange(&ws->closing, true)) atomic_store(&ws->close_code, code);
}

/* Handles one complete frame; payload already unmasked. */
static void ws_frame(bv__ws_hub *hub, bv_ws *ws, const bv__ws_frame *f, uint8_t *payload)
{
    switch (f->opcode) {
    case OP_PING:
        ws_send_frame(ws, OP_PONG, payload, (size_t)f->len);
        return;
    case OP_PONG:
        return;
    case OP_CLOSE: {
        unsigned code = 1000;
        if (f->len == 1) code = 1002;
        else if (f->len >= 2) {
            unsigned c = ((unsigned)payload[0] << 8) | payload[1];
            bool valid = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
            code = valid && json_utf8_valid((const char *)payload + 2, (size_t)f->len - 2) ? c : 1002;
        }
        ws_fail(ws, code);   /* answer with the same code (5.5.1), then close */
        return;
    }
    case OP_BINARY:
        if (!ws->in_msg) { ws_fail(ws, 1003); return; }   /* our protocol is text only */
        ws_fail(ws, 1002);
        return;
    case OP_TEXT:
        if (ws->in_msg) { ws_fail(ws, 1002); return; }
        bv_buf_reset(&ws->msg);
        ws->in_msg = true;
        break;
    case OP_CONT:
        if (!ws->in_msg) { ws_fail(ws, 1002); return; }
        break;
    default:
        ws_fail(ws, 1002);
        return;
    }
    if (bv_buf_append(&ws->msg, payload, (size_t)f->len) != BV_OK) { ws_fail(ws, 1009); return; }
    if (!f->fin) return;
    ws->in_msg = false;
    const char *text = bv_buf_cstr(&ws->msg);
    if (!json_utf8_valid(text, ws->msg.len)) { ws_fail(ws, 1007); return; }
    if (hub->h.on_text) hub->h.on_text(hub->h.ctx, ws, text, ws->msg.len);
}

/* Parses every complete frame in rbuf. */
static void ws_parse(bv__ws_hub *hub, bv_ws *ws)
{
    size_t off = 0;
    while (!atomic_load(&ws->closing)) {
        bv__ws_frame f;
        int rc = bv__ws_parse_header(ws->rbuf + off, ws->rlen - off, BV_WS_MAX_MESSAGE, &f);
        if (rc < 0) { ws_fail(ws, (unsigned)-rc); break; }
        if (rc == 0 || ws->rlen - off < f.header_len + f.len) break;
        uint8_t *p = ws->rbuf + off + f.header_len;
        for (uint64_t i = 0; i < f.len; i++) p[i] ^= f.mask[i & 3];
        ws_frame(hub, ws, &f, p);
        off += f.header_len + (size_t)f.len;
    }
    if (off) {
        memmove(ws->rbuf, ws->rbuf + off, ws->rlen - off);
        ws->rlen -= off;
    }
}

static bool ws_append_raw(bv_ws *ws, const void *data, size_t n)
{
    if (ws->rlen + n > ws->rcap) {
        size_t cap = ws->rcap ? ws->rcap : 4096;
        while (cap < ws->rlen + n) cap *= 2;
        if (cap > BV_WS_MAX_MESSAGE + 64 + WS_READ_CHUNK) return false;
        ws->rbuf = bv_realloc(ws->rbuf, cap);
        ws->rcap = cap;
    }
    memcpy(ws->rbuf + ws->rlen, data, n);
    ws->rlen += n;
    return true;
}

static void ws_read(bv__ws_hub *hub, bv_ws *ws)
{
    uint8_t buf[WS_READ_CHUNK];
    ssize_t r;
    do {
        r = recv(ws->fd, buf, sizeof buf, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {   /* peer closed without a close frame (or a socket error) */
        pthread_mutex_lock(&ws->wmu);
        ws->close_sent = true;   /* nothing more can be sent */
        pthread_mutex_unlock(&ws->wmu);
        ws_fail(ws, 1006);
        return;
    }
    ws->last_rx_ms = mono_ms();
    if (!ws_append_raw(ws, buf, (size_t)r)) { ws_fail(ws, 1009); return; }
    ws_parse(hub, ws);
}

static void ws_free(bv_ws *ws)
{
    pthread_mutex_destroy(&ws->wmu);
    bv_buf_free(&ws->msg);
    free(ws->rbuf);
    free(ws->authorization);
    free(ws);
}

/* Sends the close frame (if still possible), tells the application, hands the socket back. */
static void ws_finish(bv__ws_hub *hub, bv_ws *ws)
{
    unsigned code = atomic_load(&ws->close_code);
    if (code != 1006) {
        uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        ws_send_frame(ws, OP_CLOSE, p, 2);
    }
    if (ws->opened && hub->h.on_close) hub->h.on_close(hub->h.ctx, ws);
    shutdown(ws->fd, SHUT_RDWR);
    hub->close_fn(ws->handle);
    ws_free(ws);
}

static void *hub_main(void *arg)
{
    bv_thread_name("bv-websocket");
    bv__ws_hub *hub = arg;
    struct pollfd *pfd = bv_calloc(BV_WS_MAX_CONNECTIONS + 1, sizeof *pfd);
    bv_ws **who = bv_calloc(BV_WS_MAX_CONNECTIONS + 1, sizeof *who);
    for (;;) {
        /* open new connections, finish closing ones, snapshot the rest */
        pthread_mutex_lock(&hub->mu);
        bool stopping = hub->stopping;
        bv_ws *done = NULL;
        for (bv_ws **pp = &hub->conns; *pp;) {
            bv_ws *ws = *pp;
            if (stopping && !atomic_load(&ws->closing)) ws_fail(ws, 1001);
            if (atomic_load(&ws->closing)) {
                *pp = ws->next;
                hub->n--;
                ws->next = done;
                done = ws;
            } else {
                pp = &ws->next;
            }
        }
        pthread_mutex_unlock(&hub->mu);
        while (done) {
            bv_ws *ws = done;
            done = ws->next;
            ws_finish(hub, ws);
        }
        pthread_mutex_lock(&hub->mu);
        if (hub->stopping && !hub->conns) { pthread_mutex_unlock(&hub->mu); break; }
        size_t n = 1;
        pfd[0].fd = hub->wake[0];
        pfd[0].events = POLLIN;
        for (bv_ws *ws = hub->conns; ws && n <= BV_WS_MAX_CONNECTIONS; ws = ws->next) {
            pfd[n].fd = ws->fd;
            pfd[n].events = POLLIN;
            pfd[n].revents = 0;
            who[n] = ws;
            n++;
        }
        pthread_mutex_unlock(&hub->mu);
        /* connections opened since the last round: the application hears of them here, on
         * this thread, before their first message */
        for (size_t i = 1; i < n; i++) {
            bv_ws *ws = who[i];
            if (!ws->opened) {
                ws->opened = true;
                if (hub->h.on_open) hub->h.on_open(hub->h.ctx, ws);
                if (ws->rlen) ws_parse(hub, ws);   /* bytes that came with the handshake */
            }
        }
        int pr = poll(pfd, (nfds_t)n, 1000);
        if (pr < 0 && errno != EINTR) bv_panic("ws: poll failed");
        if (pr > 0 && (pfd[0].revents & POLLIN)) {
            char drain[64];
            while (read(hub->wake[0], drain, sizeof drain) > 0) {}
        }
        int64_t now = mono_ms();
        for (size_t i = 1; i < n; i++) {
            bv_ws *ws = who[i];
            if (pr > 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) ws_read(hub, ws);
            if (atomic_load(&ws->closing)) continue;
            if (now - ws->last_rx_ms > BV_WS_DEAD_AFTER_S * 1000) {
                ws_fail(ws, 1001);
            } else if (now - ws->last_rx_ms > BV_WS_PING_INTERVAL_S * 1000 &&
                       now - ws->last_ping_ms > BV_WS_PING_INTERVAL_S * 1000) {
                ws->last_ping_ms = now;
                ws_send_frame(ws, OP_PING, "bevan", 5);
            }
        }
    }
    free(pfd);
    free(who);
    return NULL;
}

bv__ws_hub *bv__ws_hub_new(const bv_ws_handler *h, void (*close_fn)(void *handle))
{
    bv__ws_hub *hub = bv_calloc(1, sizeof *hub);
    hub->h = *h;
    hub->close_fn = close_fn;
    pthread_mutex_init(&hub->mu, NULL);
    if (pipe(hub->wake) != 0) bv_panic("ws: pipe failed");
    for (int i = 0; i < 2; i++) {
        fcntl(hub->wake[i], F_SETFL, fcntl(hub->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(hub->wake[i], F_SETFD, FD_CLOEXEC);
    }
    if (pthread_create(&hub->thread, NULL, hub_main, hub) != 0) bv_panic("ws: cannot start the I/O thread");
    return hub;
}

void bv__ws_hub_stop(bv__ws_hub *hub)
{
    if (!hub) return;
    pthread_mutex_lock(&hub->mu);
    bool already = hub->stopping;
    hub->stopping = true;
    pthread_mutex_unlock(&hub->mu);
    if (already) return;
    hub_wake(hub);
    pthread_join(hub->thread, NULL);
    pthread_mutex_lock(&hub->mu);
    hub->stopped = true;
    pthread_mutex_unlock(&hub->mu);
}

void bv__ws_hub_free(bv__ws_hub *hub)
{
    if (!hub) return;
    bv__ws_hub_stop(hub);
    close(hub->wake[0]);
    close(hub->wake[1]);
    pthread_mutex_destroy(&hub->mu);
    free(hub);
}

bool bv__ws_hub_full(bv__ws_hub *hub)
{
    pthread_mutex_lock(&hub->mu);
    bool full = hub->n >= BV_WS_MAX_CONNECTIONS || hub->stopping;
    pthread_mutex_unlock(&hub->mu);
    return full;
}

void bv__ws_adopt(bv__ws_hub *hub, int fd, void *handle, const char *extra, size_t n_extra, const char *authorization,
                  const char *peer)
{
    pthread_mutex_lock(&hub->mu);
    bool gone = hub->stopped;
    pthread_mutex_unlock(&hub->mu);
    if (gone) {   /* an upgrade that completed while the server was stopping */
        shutdown(fd, SHUT_RDWR);
        hub->close_fn(handle);
        return;
    }
    bv_ws *ws = bv_calloc(1, sizeof *ws);
    ws->hub = hub;
    ws->fd = fd;
    ws->handle = handle;
    pthread_mutex_init(&ws->wmu, NULL);
    atomic_init(&ws->closing, false);
    atomic_init(&ws->close_code, 1000);
    bv_buf_init(&ws->msg, BV_WS_MAX_MESSAGE);
    ws->last_rx_ms = ws->last_ping_ms = mono_ms();
    ws->authorization = authorization ? bv_strdup(authorization) : NULL;
    snprintf(ws->peer, sizeof ws->peer, "%s", peer ? peer : "");
    if (n_extra && !ws_append_raw(ws, extra, n_extra)) ws_fail(ws, 1009);
    pthread_mutex_lock(&hub->mu);
    if (hub->stopping || hub->n >= BV_WS_MAX_CONNECTIONS) ws_fail(ws, 1013);   /* try again later */
    ws->next = hub->conns;
    hub->conns = ws;
    hub->n++;
    pthread_mutex_unlock(&hub->mu);
    hub_wake(hub);
}
