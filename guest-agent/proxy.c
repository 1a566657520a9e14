/* SPDX-License-Identifier: Apache-2.0 */
/* agent_proxy: the guest's only way out. An HTTP proxy on a loopback port: each CONNECT
 * host:port, or plain request for an http:// URL, becomes an Egress stream that the host decides
 * and connects. A refusal comes back at once as a 403 whose body says which rule refused it; an
 * allowed connection is relayed under the channel's credits in both directions. A plain request
 * is rewritten to origin form with `Connection: close`, so one connection carries one decided
 * request. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"

#define HEAD_MAX_BYTES (16u * 1024u)
#define MAX_CLIENTS 256u

enum cstate { C_HEAD, C_WAIT, C_RELAY };

struct client {
    struct agent_stream stream; /* first: the connection's table points here */
    struct agent_proxy *eg;
    struct agent_source src;
    enum cstate state;
    bool registered; /* the stream is in the connection's table (it owns us then) */
    bool tunnel;
    struct cdn_buf head;      /* the request as read, until the verdict */
    struct cdn_buf up;        /* bytes for the host before the client's own (rewritten head) */
    struct cdn_buf to_client; /* the host's bytes the client has not taken yet */
    bool client_eof, host_eof, shut_client;
    uint32_t events;
    struct client *next; /* in eg->waiting while not registered */
};

struct agent_proxy {
    struct agent_loop *loop;
    struct agent_conn *conn;
    struct agent_source listener;
    struct client *waiting; /* clients still sending their request head */
    size_t n_clients;
};

static void client_free(struct client *cl) {
    struct agent_proxy *eg = cl->eg;
    if (!cl->registered)
        for (struct client **p = &eg->waiting; *p; p = &(*p)->next)
            if (*p == cl) {
                *p = cl->next;
                break;
            }
    if (cl->src.fd >= 0)
        agent_loop_del(eg->loop, &cl->src);
    safe_close(cl->src.fd);
    cdn_buf_free(&cl->head);
    cdn_buf_free(&cl->up);
    cdn_buf_free(&cl->to_client);
    eg->n_clients--;
    free(cl);
}

/* Ends the client: through the connection when it owns the stream. */
static void client_close(struct client *cl) {
    if (cl->registered)
        agent_conn_close_stream(cl->stream.conn, &cl->stream);
    else
        client_free(cl);
}

static void set_events(struct client *cl) {
    uint32_t want = 0;
    if (cl->state == C_HEAD || (cl->state == C_RELAY && !cl->client_eof && !cl->stream.blocked))
        want |= EPOLLIN;
    if (cdn_buf_len(&cl->to_client) > 0)
        want |= EPOLLOUT;
    if (want != cl->events) {
        cl->events = want;
        agent_loop_mod(cl->eg->loop, &cl->src, want);
    }
}

/* A short answer of the proxy's own, then the client is closed. */
static void answer(struct client *cl, int code, const char *status, const char *body) {
    char msg[1400];
    int blen = (int)strnlen(body, 1200);
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "Connection: close\r\nX-Cordon-Egress: %s\r\n\r\n%.*s\n",
                     code, status, blen + 1, code == 403 ? "denied" : "error", blen, body);
    if (n > 0 && send(cl->src.fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1,
                      MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* the client is gone: nothing more to say */
    }
    client_close(cl);
}

/* ---- the stream's side ---- */

/* Sends what the host may take: first the rewritten head, then what the client writes. */
static void pump_up(struct client *cl) {
    struct agent_conn *c = cl->stream.conn;
    while (cl->state == C_RELAY && !cl->client_eof) {
        size_t room = agent_conn_send_room(c, &cl->stream);
        if (room == 0)
            break; /* on_writable brings us back */
        struct cdn_frame_data_slot slot;
        uint8_t *p = agent_conn_data_begin(c, &cl->stream, CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA,
                                           0, room, &slot);
        if (!p)
            break;
        size_t pending = cdn_buf_len(&cl->up);
        if (pending) {
            size_t n = pending < room ? pending : room;
            memcpy(p, cdn_buf_head(&cl->up), n);
            cdn_buf_consume(&cl->up, n);
            agent_conn_data_end(c, &cl->stream, &slot, n, false);
            continue;
        }
        ssize_t n = read(cl->src.fd, p, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break; /* the slot is not committed */
        if (n < 0) {
            agent_conn_send_error(c, cl->stream.id, CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED,
                                  "the guest's client went away: %s", strerror(errno));
            client_close(cl);
            return;
        }
        agent_conn_data_end(c, &cl->stream, &slot, (size_t)n, n == 0);
        if (n == 0)
            cl->client_eof = true;
    }
    if (cl->client_eof && cl->host_eof && cdn_buf_len(&cl->to_client) == 0) {
        client_close(cl);
        return;
    }
    set_events(cl);
}

/* Writes what the client takes of to_client; the host gets credit for it. -1: closed. */
static int flush_client(struct client *cl) {
    size_t before = cdn_buf_len(&cl->to_client);
    if (before) {
        ssize_t n = cdn_buf_write_fd(&cl->to_client, cl->src.fd);
        if (n < 0) {
            agent_conn_send_error(cl->stream.conn, cl->stream.id,
                                  CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED,
                                  "the guest's client stopped reading: %s", strerror((int)-n));
            client_close(cl);
            return -1;
        }
        agent_conn_consumed(cl->stream.conn, &cl->stream, before - cdn_buf_len(&cl->to_client));
    }
    if (cl->host_eof && !cl->shut_client && cdn_buf_len(&cl->to_client) == 0) {
        shutdown(cl->src.fd, SHUT_WR);
        cl->shut_client = true;
    }
    return 0;
}

static void on_ready(struct client *cl) {
    cl->state = C_RELAY;
    if (cl->tunnel) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        cdn_buf_append(&cl->to_client, ok, sizeof(ok) - 1);
        /* bytes the client sent after its CONNECT head are the tunnel's first */
    }
    if (cdn_buf_len(&cl->head))
        cdn_buf_append(&cl->up, cdn_buf_head(&cl->head), cdn_buf_len(&cl->head));
    cdn_buf_free(&cl->head);
    if (flush_client(cl) == 0)
        pump_up(cl);
}

static void stream_on_frame(struct agent_stream *s, const cdn_envelope *env) {
    struct client *cl = (struct client *)s;
    switch (env->body_case) {
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_READY:
        if (cl->state == C_WAIT)
            on_ready(cl);
        return;
    case CORDON_AGENT__ENVELOPE__BODY_ERROR:
        if (cl->state == C_WAIT) {
            bool refused = env->error->code == CORDON_AGENT__ERROR_CODE__ERROR_REFUSED;
            answer(cl, refused ? 403 : 502, refused ? "Forbidden" : "Bad Gateway",
                   env->error->message);
        } else {
            client_close(cl);
        }
        return;
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA: {
        const CordonAgent__EgressData *d = env->egress_data;
        if (cl->state != C_RELAY || cl->host_eof) {
            agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                                  "egress data before ready or after eof");
            client_close(cl);
            return;
        }
        size_t done = 0;
        if (cdn_buf_len(&cl->to_client) == 0 && d->data.len) { /* straight to the client */
            ssize_t w = send(cl->src.fd, d->data.data, d->data.len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED,
                                      "the guest's client stopped reading: %s", strerror(errno));
                client_close(cl);
                return;
            }
            done = w > 0 ? (size_t)w : 0;
            agent_conn_consumed(s->conn, s, done);
        }
        if (d->data.len > done &&
            cdn_buf_append(&cl->to_client, d->data.data + done, d->data.len - done) < 0) {
            agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL,
                                  "out of memory");
            client_close(cl);
            return;
        }
        cl->host_eof = d->eof;
        if (flush_client(cl) < 0)
            return;
        if (cl->client_eof && cl->host_eof && cdn_buf_len(&cl->to_client) == 0) {
            client_close(cl);
            return;
        }
        set_events(cl);
        return;
    }
    default:
        agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "%s is not valid on an egress stream",
                              cdn_frame_body_name(env->body_case));
        client_close(cl);
    }
}

static void stream_on_writable(struct agent_stream *s) { pump_up((struct client *)s); }

static void stream_destroy(struct agent_stream *s) {
    struct client *cl = (struct client *)s;
    cl->registered = false; /* the connection has let go already */
    client_free(cl);
}

static const struct agent_stream_ops stream_ops = {
    .on_frame = stream_on_frame, .on_writable = stream_on_writable, .destroy = stream_destroy};

/* ---- the request head ---- */

/* host[:port] or [v6][:port] into host and port (default dflt). */
static bool split_authority(const char *a, size_t len, char *host, size_t hsize, uint16_t dflt,
                            uint16_t *port) {
    const char *colon = NULL, *hend = a + len;
    if (len && a[0] == '[') {
        const char *rb = memchr(a, ']', len);
        if (!rb)
            return false;
        colon = rb + 1 < a + len && rb[1] == ':' ? rb + 1 : NULL;
        hend = rb + 1;
    } else {
        colon = memchr(a, ':', len);
        hend = colon ? colon : a + len;
    }
    size_t hl = (size_t)(hend - a);
    if (hl == 0 || hl >= hsize)
        return false;
    memcpy(host, a, hl);
    host[hl] = '\0';
    *port = dflt;
    if (colon) {
        unsigned long v = 0;
        const char *p = colon + 1;
        if (p >= a + len)
            return false;
        for (; p < a + len; p++) {
            if (*p < '0' || *p > '9' || (v = v * 10 + (unsigned long)(*p - '0')) > 65535)
                return false;
        }
        *port = (uint16_t)v;
    }
    return *port != 0;
}

static bool hop_header(const char *line, size_t len) {
    static const char *const drop[] = {
        "proxy-connection:", "proxy-authorization:", "connection:", "keep-alive:", NULL};
    for (const char *const *d = drop; *d; d++) {
        size_t n = strlen(*d);
        if (len >= n && strncasecmp(line, *d, n) == 0)
            return true;
    }
    return false;
}

/* The head is complete (its end at `end` bytes into head): decide what to ask the host for. */
static void on_head(struct client *cl, size_t end) {
    const char *h = (const char *)cdn_buf_head(&cl->head);
    const char *eol = memchr(h, '\r', end);
    const char *sp1 = memchr(h, ' ', (size_t)(eol - h));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2) {
        answer(cl, 400, "Bad Request", "cordon proxy: malformed request line");
        return;
    }
    char host[256];
    uint16_t port;
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    cl->tunnel = (size_t)(sp1 - h) == 7 && strncmp(h, "CONNECT", 7) == 0;
    if (cl->tunnel) {
        if (!split_authority(target, tlen, host, sizeof(host), 0, &port)) {
            answer(cl, 400, "Bad Request", "cordon proxy: CONNECT needs host:port");
            return;
        }
        cdn_buf_consume(&cl->head, end); /* what follows is the tunnel's */
    } else {
        if (tlen < 8 || strncasecmp(target, "http://", 7) != 0) {
            answer(cl, 400, "Bad Request",
                   "cordon proxy: only CONNECT host:port and absolute http:// requests (use "
                   "CONNECT for https)");
            return;
        }
        const char *auth = target + 7, *tend = target + tlen;
        const char *path = auth;
        while (path < tend && *path != '/' && *path != '?')
            path++;
        if (!split_authority(auth, (size_t)(path - auth), host, sizeof(host), 80, &port)) {
            answer(cl, 400, "Bad Request", "cordon proxy: no host in the URL");
            return;
        }
        /* origin form, hop-by-hop headers dropped, one request per connection */
        struct cdn_buf out = {0};
        cdn_buf_append(&out, h, (size_t)(sp1 - h) + 1);
        if (path == tend)
            cdn_buf_append(&out, "/", 1);
        else
            cdn_buf_append(&out, path, (size_t)(tend - path));
        cdn_buf_append(&out, sp2, (size_t)(eol - sp2) + 2);
        const char *line = eol + 2, *head_end = h + end - 2; /* at the final CRLF */
        while (line < head_end) {
            const char *le = memchr(line, '\r', (size_t)(head_end - line));
            if (!le)
                le = head_end;
            if (!hop_header(line, (size_t)(le - line)))
                cdn_buf_append(&out, line, (size_t)(le - line) + 2);
            line = le + 2;
        }
        static const char close_hdr[] = "Connection: close\r\n\r\n";
        cdn_buf_append(&out, close_hdr, sizeof(close_hdr) - 1);
        cdn_buf_append(&out, h + end, cdn_buf_len(&cl->head) - end); /* a body's start */
        cdn_buf_free(&cl->head);
        cl->head = out;
    }
    struct agent_proxy *eg = cl->eg;
    if (!eg->conn || !agent_conn_ready(eg->conn)) {
        answer(cl, 503, "Service Unavailable", "cordon proxy: the host is not connected");
        return;
    }
    for (struct client **p = &eg->waiting; *p; p = &(*p)->next)
        if (*p == cl) {
            *p = cl->next;
            break;
        }
    cl->registered = true;
    if (!agent_conn_open_stream(eg->conn, &cl->stream, &stream_ops)) {
        cl->registered = false;
        cl->next = eg->waiting;
        eg->waiting = cl;
        answer(cl, 503, "Service Unavailable", "cordon proxy: too many connections");
        return;
    }
    cl->state = C_WAIT;
    CordonAgent__EgressOpen o = CORDON_AGENT__EGRESS_OPEN__INIT;
    o.host = host;
    o.port = port;
    o.connect = cl->tunnel;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EGRESS_OPEN;
    env.egress_open = &o;
    agent_conn_send(eg->conn, cl->stream.id, &env);
    set_events(cl);
}

static void read_head(struct client *cl) {
    for (;;) {
        size_t have = cdn_buf_len(&cl->head);
        if (have >= HEAD_MAX_BYTES) {
            answer(cl, 431, "Request Header Fields Too Large",
                   "cordon proxy: the request head is over 16 KiB");
            return;
        }
        if (cdn_buf_reserve(&cl->head, HEAD_MAX_BYTES - have) < 0) {
            client_close(cl);
            return;
        }
        ssize_t n = read(cl->src.fd, cdn_buf_tail(&cl->head), HEAD_MAX_BYTES - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            client_close(cl);
            return;
        }
        cdn_buf_advance(&cl->head, (size_t)n);
        const uint8_t *h = cdn_buf_head(&cl->head);
        size_t len = cdn_buf_len(&cl->head);
        for (size_t i = (have > 3 ? have - 3 : 0); i + 4 <= len; i++)
            if (!memcmp(h + i, "\r\n\r\n", 4)) {
                on_head(cl, i + 4);
                return;
            }
    }
}

static void client_dispatch(struct agent_source *src, uint32_t events) {
    struct client *cl = (struct client *)((char *)src - offsetof(struct client, src));
    switch (cl->state) {
    case C_HEAD: read_head(cl); return;
    case C_WAIT:
        if (events & (EPOLLHUP | EPOLLERR)) { /* gave up before the verdict */
            agent_conn_send_error(cl->stream.conn, cl->stream.id,
                                  CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED,
                                  "the guest's client went away");
            client_close(cl);
        }
        return;
    case C_RELAY:
        if ((events & EPOLLOUT) && flush_client(cl) < 0)
            return;
        if ((events & EPOLLERR) || ((events & EPOLLHUP) && cl->client_eof)) {
            agent_conn_send_error(cl->stream.conn, cl->stream.id,
                                  CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED,
                                  "the guest's client went away");
            client_close(cl);
            return;
        }
        pump_up(cl);
        return;
    }
}

/* A client for fd (taken: closed on failure), in state, watched by the loop; NULL: none. */
static struct client *client_add(struct agent_proxy *eg, int fd, enum cstate state) {
    struct client *cl = eg->n_clients < MAX_CLIENTS ? calloc(1, sizeof(*cl)) : NULL;
    if (!cl) {
        close(fd);
        return NULL;
    }
    cl->eg = eg;
    cl->src.fd = fd;
    cl->src.dispatch = client_dispatch;
    cl->state = state;
    cl->events = EPOLLIN;
    eg->n_clients++;
    if (agent_loop_add(eg->loop, &cl->src, EPOLLIN) < 0) {
        close(fd);
        eg->n_clients--;
        free(cl);
        return NULL;
    }
    return cl;
}

static void on_accept(struct agent_source *src, uint32_t events) {
    (void)events;
    struct agent_proxy *eg =
        (struct agent_proxy *)((char *)src - offsetof(struct agent_proxy, listener));
    for (;;) {
        int fd = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct client *cl = client_add(eg, fd, C_HEAD);
        if (!cl)
            continue;
        cl->next = eg->waiting;
        eg->waiting = cl;
    }
}

void agent_proxy_forward(struct agent_proxy *eg, struct agent_conn *c, uint64_t id,
                         const CordonAgent__PortForward *pf) {
    if (!eg || pf->port == 0 || pf->port > 65535 || eg->n_clients >= MAX_CLIENTS) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_REFUSED,
                              !eg ? "previews need the agent's relay (--egress-proxy)"
                              : pf->port == 0 || pf->port > 65535
                                  ? "port %u is not a port"
                                  : "the guest has %u connections relayed already",
                              !eg        ? 0
                              : pf->port ? pf->port
                                         : MAX_CLIENTS);
        return;
    }
    /* Loopback: the connection is made (or refused) at once. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)pf->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_REFUSED,
                              "nothing answers on port %u in the guest: %s", pf->port,
                              strerror(errno));
        safe_close(fd);
        return;
    }
    int fl = fcntl(fd, F_GETFL);
    struct client *cl = fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0
                            ? client_add(eg, fd, C_RELAY)
                            : (close(fd), NULL);
    if (!cl) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL,
                              "cannot relay port %u", pf->port);
        return;
    }
    agent_conn_add_stream(c, &cl->stream, id, &stream_ops);
    cl->registered = true;
    CordonAgent__PortForwardReady ready = CORDON_AGENT__PORT_FORWARD_READY__INIT;
    cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
    out.body_case = CORDON_AGENT__ENVELOPE__BODY_PORT_FORWARD_READY;
    out.port_forward_ready = &ready;
    agent_conn_send(c, id, &out);
    pump_up(cl);
}

/* A guest's loopback starts down; the proxy needs it up. */
static void loopback_up(void) {
    _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
            /* not ours to bring up (not root): the bind below says what is wrong */
        }
    }
}

int agent_proxy_new(struct agent_loop *loop, const char *addr, struct agent_proxy **out,
                    cdn_err **err) {
    char host[64];
    uint16_t port;
    if (!split_authority(addr, strlen(addr), host, sizeof(host), 0, &port))
        return cdn_err_set(err, EINVAL, "--egress-proxy: '%s' is not ADDRESS:PORT", addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return cdn_err_set(err, EINVAL, "--egress-proxy: '%s' is not an IPv4 address", host);
    loopback_up();
    _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0)
        return cdn_err_set(err, errno, "egress proxy on %s: %m", addr);
    struct agent_proxy *eg = calloc(1, sizeof(*eg));
    if (!eg)
        return cdn_err_set(err, ENOMEM, "out of memory");
    eg->loop = loop;
    eg->listener.fd = TAKE_FD(fd);
    eg->listener.dispatch = on_accept;
    int r = agent_loop_add(loop, &eg->listener, EPOLLIN);
    if (r < 0) {
        safe_close(eg->listener.fd);
        free(eg);
        return cdn_err_set(err, -r, "epoll_ctl: %s", strerror(-r));
    }
    *out = eg;
    return 0;
}

void agent_proxy_set_conn(struct agent_proxy *eg, struct agent_conn *c) {
    if (eg)
        eg->conn = c;
}

void agent_proxy_free(struct agent_proxy *eg) {
    if (!eg)
        return;
    while (eg->waiting)
        client_free(eg->waiting);
    agent_loop_del(eg->loop, &eg->listener);
    safe_close(eg->listener.fd);
    free(eg);
}
