/* Benchmark backend: a tiny HTTP/1.1 + WebSocket echo server (epoll, one thread per core).
 *
 * Every request whose head carries "Upgrade: websocket" is switched to RFC 6455 and each frame
 * the client sends comes back unmasked with the same opcode and FIN bit (pings get pongs, a
 * close is answered and the connection closed). Any other request gets a small fixed 200
 * response on a keep-alive connection (request bodies are not expected and not read).
 * Workers share the port with SO_REUSEPORT. Only the benchmark reaches it.
 *
 *   echo [port] [threads]       (defaults: 3000, 2)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 16384
#define FRAME_MAX (64u << 20)

static const char BODY[] =
    "<!doctype html><title>sealskin-bench</title><p>benchmark backend: a small response.</p>\n";
static char response[512];
static size_t response_len;
static int port = 3000;

/* -- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept ---------------------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *m = calloc(total, 1);
    memcpy(m, msg, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
                   (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void base64(const unsigned char *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* -- connections ---------------------------------------------------------------------- */

struct buf { unsigned char *p; size_t len, cap; };

struct conn {
    int fd;
    int ws;
    struct buf in, out;
};

static void reserve(struct buf *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + more) cap *= 2;
    b->p = realloc(b->p, cap);
    b->cap = cap;
}

static void put(struct buf *b, const void *p, size_t n) {
    reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void drop(struct buf *b, size_t n) {
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* Case-insensitive search for a header line "name: ...value..." in the head. */
static const char *header(const char *head, const char *name) {
    size_t n = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, n) == 0 && line[2 + n] == ':') return line + 3 + n;
    }
    return NULL;
}

/* Returns bytes consumed, 0 if the head is incomplete, -1 to close. */
static long http(struct conn *c) {
    unsigned char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4);
    if (!end) return c->in.len > HEAD_MAX ? -1 : 0;
    size_t used = (size_t)(end - c->in.p) + 4;
    char head[HEAD_MAX + 8];
    size_t hn = used < HEAD_MAX ? used : HEAD_MAX;
    memcpy(head, c->in.p, hn);
    head[hn] = 0;
    const char *up = header(head, "upgrade");
    if (up && strcasestr(up, "websocket")) {
        const char *key = header(head, "sec-websocket-key");
        if (!key) return -1;
        while (*key == ' ') key++;
        char buf[128];
        size_t k = 0;
        while (key[k] && key[k] != '\r' && k < 60) { buf[k] = key[k]; k++; }
        memcpy(buf + k, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
        unsigned char digest[20];
        char accept[32];
        sha1((unsigned char *)buf, k + 36, digest);
        base64(digest, 20, accept);
        char reply[256];
        int n = snprintf(reply, sizeof reply,
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
        put(&c->out, reply, (size_t)n);
        c->ws = 1;
    } else {
        put(&c->out, response, response_len);
    }
    return (long)used;
}

/* Echoes complete frames; returns bytes consumed, -1 to close. */
static long frames(struct conn *c) {
    size_t pos = 0;
    unsigned char *p = c->in.p;
    while (c->in.len - pos >= 2) {
        unsigned b0 = p[pos], b1 = p[pos + 1];
        uint64_t n = b1 & 0x7F;
        size_t at = pos + 2;
        if (n == 126) {
            if (c->in.len - at < 2) break;
            n = (uint64_t)p[at] << 8 | p[at + 1];
            at += 2;
        } else if (n == 127) {
            if (c->in.len - at < 8) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = n << 8 | p[at + i];
            at += 8;
        }
        if (n > FRAME_MAX) return -1;
        unsigned char mask[4] = {0, 0, 0, 0};
        int masked = b1 & 0x80;
        if (masked) {
            if (c->in.len - at < 4) break;
            memcpy(mask, p + at, 4);
            at += 4;
        }
        if (c->in.len - at < n) break;
        unsigned char *payload = p + at;
        if (masked) {
            uint32_t m32;
            memcpy(&m32, mask, 4);
            uint64_t m64 = (uint64_t)m32 << 32 | m32;
            size_t i = 0;
            for (; i + 8 <= n; i += 8) {
                uint64_t v;
                memcpy(&v, payload + i, 8);
                v ^= m64;
                memcpy(payload + i, &v, 8);
            }
            for (; i < n; i++) payload[i] ^= mask[i & 3];
        }
        unsigned opcode = b0 & 0x0F;
        unsigned char hdr[10];
        size_t hl;
        unsigned first = opcode == 0x9 ? 0x8A : b0;
        hdr[0] = (unsigned char)first;
        if (n < 126) { hdr[1] = (unsigned char)n; hl = 2; }
        else if (n < 65536) { hdr[1] = 126; hdr[2] = (unsigned char)(n >> 8); hdr[3] = (unsigned char)n; hl = 4; }
        else { hdr[1] = 127; for (int i = 0; i < 8; i++) hdr[2 + i] = (unsigned char)(n >> (56 - 8 * i)); hl = 10; }
        pos = at + n;
        if (opcode == 0xA) continue;  /* pong: nothing to do */
        put(&c->out, hdr, hl);
        put(&c->out, payload, n);
        if (opcode == 0x8) return -2;  /* close answered: flush, then close */
    }
    return (long)pos;
}

static int flush(struct conn *c) {
    size_t done = 0;
    while (done < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + done, c->out.len - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)n;
    }
    drop(&c->out, done);
    return 0;
}

static void closing(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

static void readable(int ep, struct conn *c) {
    for (;;) {
        reserve(&c->in, 65536);
        ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
        if (n == 0) { closing(ep, c); return; }
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            closing(ep, c);
            return;
        }
        c->in.len += (size_t)n;
        long used;
        int closing_after = 0;
        do {
            used = c->ws ? frames(c) : http(c);
            if (used == -2) { closing_after = 1; break; }
            if (used < 0) { closing(ep, c); return; }
            if (used > 0) drop(&c->in, (size_t)used);
        } while (used > 0 && c->in.len > 0);
        if (flush(c) < 0 || closing_after) { closing(ep, c); return; }
        if ((size_t)n < 65536) break;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (c->out.len ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void *worker(void *arg) {
    (void)arg;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 4096) < 0) {
        perror("listen");
        exit(1);
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event events[256];
    for (;;) {
        int k = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < k; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event e2 = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                if (flush(c) < 0) { closing(ep, c); continue; }
                if (!c->out.len) {
                    struct epoll_event e2 = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e2);
                }
            }
            if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable(ep, c);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) port = atoi(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    signal(SIGPIPE, SIG_IGN);
    response_len = (size_t)snprintf(response, sizeof response,
                                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                    "Content-Length: %zu\r\n\r\n%s", sizeof BODY - 1, BODY);
    pthread_t t;
    for (int i = 1; i < threads; i++) pthread_create(&t, NULL, worker, NULL);
    worker(NULL);
    return 0;
}
