/* SPDX-License-Identifier: Apache-2.0 */
/* agent_conn: reads frames from the host, routes them by stream, and writes replies without
 * letting any stream outrun the credit the host granted or the output buffer's bound. */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "cleanup.h"

#define AGENT_VERSION "0.1.0"
#define DATA_CHUNK_BYTES (256u * 1024u)
#define READ_BUDGET_BYTES (512u * 1024u)

/* The payload of one data frame in flight from a file (see agent_conn_data_splice). */
struct splice {
    bool active;
    bool copy;          /* sendfile refused, or the file ended early: pread (or zeros) instead */
    bool file_ended;    /* what is left is sent as zeros */
    int fd;             /* our dup of the file */
    uint64_t offset;    /* next file byte to take */
    uint64_t left;      /* payload bytes not yet written to the channel */
    size_t before;      /* queued bytes in out that precede the payload */
    struct cdn_buf tmp; /* copy mode's bounce buffer */
};

struct agent_conn {
    struct agent_loop *loop;
    struct agent_source src;
    struct agent_conn_opts opts;
    struct agent_conn_handlers h;
    struct cdn_frame_decoder *dec;
    struct cdn_buf out;
    size_t out_high; /* stop producing data above this many queued bytes */
    bool want_out;   /* EPOLLOUT registered */
    bool need_wake;  /* a splice ended: blocked streams may produce again */
    struct splice splice;
    bool closed;
    bool hello_done;
    uint64_t session;        /* the host's, from its Hello */
    uint32_t peer_max_frame; /* what the host accepts */
    uint32_t peer_window;    /* initial send credit per stream */
    uint64_t last_opened;    /* highest stream id the host has opened */
    uint64_t last_own;       /* highest (even) stream id we have opened */
    struct agent_stream *streams;
    size_t n_streams;
};

static void conn_close(struct agent_conn *c);

struct agent_loop *agent_conn_loop(struct agent_conn *c) {
    return c->loop;
}
bool agent_conn_closed(const struct agent_conn *c) { return c->closed; }

static struct agent_stream *find_stream(struct agent_conn *c, uint64_t id) {
    for (struct agent_stream *s = c->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static void update_events(struct agent_conn *c) {
    bool want = cdn_buf_len(&c->out) > 0 || c->splice.active || c->need_wake;
    if (want != c->want_out && !c->closed) {
        c->want_out = want;
        agent_loop_mod(c->loop, &c->src, EPOLLIN | (want ? EPOLLOUT : 0));
    }
}

/* Moves s to the end of the stream list: streams are woken in list order, so this is what makes
 * waking round-robin and keeps one busy stream from starving the others. */
static void move_to_back(struct agent_conn *c, struct agent_stream *s) {
    struct agent_stream **p = &c->streams;
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    while (*p)
        p = &(*p)->next;
    *p = s;
    s->next = NULL;
}

/* Wakes blocked streams while there is room; each may produce and block again. */
static void wake_streams(struct agent_conn *c) {
    bool progress = true;
    c->need_wake = false;
    while (progress && !c->closed && !c->splice.active && cdn_buf_len(&c->out) < c->out_high) {
        progress = false;
        for (struct agent_stream *s = c->streams; s; s = s->next) {
            if (s->blocked && s->send_credit > 0) {
                s->blocked = false;
                move_to_back(c, s);
                s->ops->on_writable(s); /* may close s, or others */
                progress = true;
                break;
            }
        }
    }
}

static void splice_end(struct agent_conn *c) {
    struct splice *sp = &c->splice;
    sp->fd = safe_close(sp->fd);
    cdn_buf_clear(&sp->tmp, 64 * 1024);
    sp->active = sp->copy = sp->file_ended = false;
    c->need_wake = true;
}

/* Moves some of the spliced payload to the channel: > 0 progress, 0 would block, < 0 error. */
static int splice_step(struct agent_conn *c) {
    struct splice *sp = &c->splice;
    if (!sp->copy) {
        off_t off = (off_t)sp->offset;
        ssize_t n =
            sendfile(c->src.fd, sp->fd, &off, sp->left < (1u << 30) ? sp->left : (1u << 30));
        if (n > 0) {
            sp->offset += (uint64_t)n;
            sp->left -= (uint64_t)n;
            return 1;
        }
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return -errno;
        /* 0: the file ended early; other errors: this fd pair cannot sendfile. */
        sp->copy = true;
        return 1;
    }
    if (cdn_buf_len(&sp->tmp) == 0) {
        size_t want = sp->left < 65536 ? (size_t)sp->left : 65536;
        if (cdn_buf_reserve(&sp->tmp, want) < 0)
            return -ENOMEM;
        ssize_t n =
            sp->file_ended ? 0 : pread(sp->fd, cdn_buf_tail(&sp->tmp), want, (off_t)sp->offset);
        if (n <= 0) { /* the header promised these bytes: zeros keep the framing */
            sp->file_ended = true;
            memset(cdn_buf_tail(&sp->tmp), 0, want);
            n = (ssize_t)want;
        }
        cdn_buf_advance(&sp->tmp, (size_t)n);
        sp->offset += (uint64_t)n;
    }
    ssize_t w = cdn_buf_write_fd(&sp->tmp, c->src.fd);
    if (w < 0)
        return (int)w;
    sp->left -= (uint64_t)w;
    return w > 0 ? 1 : 0;
}

/* Writes what is queued, in stream order: the output buffer up to a splice's payload, the payload
 * from its file, then the rest. */
static void flush(struct agent_conn *c) {
    if (c->closed)
        return;
    for (;;) {
        int r;
        if (c->splice.active && c->splice.before == 0) {
            if (c->splice.left == 0) {
                splice_end(c);
                continue;
            }
            r = splice_step(c);
        } else {
            size_t limit = c->splice.active ? c->splice.before : cdn_buf_len(&c->out);
            if (limit == 0)
                break;
            ssize_t n = write(c->src.fd, cdn_buf_head(&c->out), limit);
            if (n > 0) {
                cdn_buf_consume(&c->out, (size_t)n);
                if (c->splice.active)
                    c->splice.before -= (size_t)n;
                r = 1;
            } else {
                r = n < 0 && errno == EINTR ? 1 : n < 0 && errno == EAGAIN ? 0 : -EPIPE;
            }
        }
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0)
            break;
    }
    update_events(c);
}

int agent_conn_data_splice(struct agent_conn *c, struct agent_stream *s,
                           CordonAgent__Envelope__BodyCase kind, int fd, uint64_t offset,
                           size_t n) {
    if (c->closed || c->splice.active)
        return -EBUSY;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (own < 0)
        return -errno;
    if (cdn_frame_data_header(&c->out, kind, s->id, 0, n) < 0) {
        safe_close(own);
        return -ENOMEM;
    }
    struct splice *sp = &c->splice;
    sp->active = true;
    sp->fd = own;
    sp->offset = offset;
    sp->left = n;
    sp->before = cdn_buf_len(&c->out);
    s->send_credit -= n < s->send_credit ? n : s->send_credit;
    flush(c);
    return 0;
}

uint32_t agent_conn_peer_max_frame(const struct agent_conn *c) { return c->peer_max_frame; }

void agent_conn_send(struct agent_conn *c, uint64_t id, cdn_envelope *env) {
    if (c->closed)
        return;
    env->stream = id;
    /* Control messages are small; a failure here means our own bug or no memory. */
    if (cdn_frame_encode(&c->out, env, c->peer_max_frame, NULL) < 0)
        return;
    flush(c);
}

void agent_conn_send_error(struct agent_conn *c, uint64_t id, CordonAgent__ErrorCode code,
                           const char *fmt, ...) {
    _cleanup_free_ char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > 4096) /* messages may quote guest paths: keep them bounded */
        msg[4096] = '\0';
    CordonAgent__Error e = CORDON_AGENT__ERROR__INIT;
    e.code = code;
    e.message = msg;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_ERROR;
    env.error = &e;
    agent_conn_send(c, id, &env);
}

size_t agent_conn_send_room(struct agent_conn *c, struct agent_stream *s) {
    size_t room = 0;
    if (!c->closed && !c->splice.active && cdn_buf_len(&c->out) < c->out_high &&
        s->send_credit > 0) {
        room = c->peer_max_frame - cdn_frame_data_overhead();
        if (room > DATA_CHUNK_BYTES)
            room = DATA_CHUNK_BYTES;
        if (room > s->send_credit)
            room = (size_t)s->send_credit;
    }
    s->blocked = room == 0;
    return room;
}

uint8_t *agent_conn_data_begin(struct agent_conn *c, struct agent_stream *s,
                               CordonAgent__Envelope__BodyCase kind, uint32_t fd, size_t max,
                               struct cdn_frame_data_slot *slot) {
    if (cdn_frame_data_begin(&c->out, kind, s->id, fd, max, slot) < 0)
        return NULL;
    return slot->payload;
}

void agent_conn_data_end(struct agent_conn *c, struct agent_stream *s,
                         const struct cdn_frame_data_slot *slot, size_t n, bool eof) {
    cdn_frame_data_end(&c->out, slot, n, eof);
    s->send_credit -= n < s->send_credit ? n : s->send_credit;
    flush(c);
}

void agent_conn_consumed(struct agent_conn *c, struct agent_stream *s, size_t n) {
    uint64_t grant = cdn_credit_consume(&s->recv, n, c->opts.stream_window);
    if (!grant)
        return;
    CordonAgent__Credit cr = CORDON_AGENT__CREDIT__INIT;
    cr.bytes = grant;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_CREDIT;
    env.credit = &cr;
    agent_conn_send(c, s->id, &env);
}

void agent_conn_add_stream(struct agent_conn *c, struct agent_stream *s, uint64_t id,
                           const struct agent_stream_ops *ops) {
    s->id = id;
    s->ops = ops;
    s->conn = c;
    s->send_credit = c->peer_window;
    s->recv = cdn_credit_init(c->opts.stream_window);
    s->blocked = false;
    s->next = c->streams;
    c->streams = s;
    c->n_streams++;
}

uint64_t agent_conn_open_stream(struct agent_conn *c, struct agent_stream *s,
                                const struct agent_stream_ops *ops) {
    if (c->closed || !c->hello_done || c->n_streams >= c->opts.max_streams)
        return 0;
    c->last_own += 2;
    agent_conn_add_stream(c, s, c->last_own, ops);
    return c->last_own;
}

bool agent_conn_ready(const struct agent_conn *c) { return !c->closed && c->hello_done; }

void agent_conn_close_stream(struct agent_conn *c, struct agent_stream *s) {
    for (struct agent_stream **p = &c->streams; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            c->n_streams--;
            break;
        }
    }
    s->ops->destroy(s);
}

/* The host's clock and random bytes (a guest restored from a saved state resumes with stale
 * ones). Best effort: a guest without the capability keeps its own. */
static void take_host_seed(const CordonAgent__Hello *h) {
    if (h->entropy.len >= 16 && h->entropy.len <= 256) {
        union {
            struct rand_pool_info info;
            uint8_t raw[sizeof(struct rand_pool_info) + 256];
        } pool;
        pool.info.entropy_count = (int)h->entropy.len * 8;
        pool.info.buf_size = (int)h->entropy.len;
        memcpy(pool.info.buf, h->entropy.data, h->entropy.len);
        int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (ioctl(fd, RNDADDENTROPY, &pool.info) == 0)
                ioctl(fd, RNDRESEEDCRNG);
            close(fd);
        }
        explicit_bzero(&pool, sizeof(pool));
    }
    if (h->host_unix_ns) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t ours = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        int64_t diff = (int64_t)h->host_unix_ns - ours;
        if (diff > 1000000000 || diff < -1000000000) {
            struct timespec host = {.tv_sec = (time_t)(h->host_unix_ns / 1000000000u),
                                    .tv_nsec = (long)(h->host_unix_ns % 1000000000u)};
            clock_settime(CLOCK_REALTIME, &host);
        }
    }
}

static void hello_reply(const struct agent_conn *c, CordonAgent__Hello *reply) {
    static const char *caps[] = {"exec",  "pty",     "signal", "rlimits",  "stdin",
                                 "files", "archive", "egress", "previews", "list_dir"};
    cordon_agent__hello__init(reply);
    reply->protocol_version = CDN_PROTOCOL_VERSION;
    reply->software_version = (char *)AGENT_VERSION;
    reply->n_capabilities = ELEMENTSOF(caps);
    reply->capabilities = (char **)caps;
    reply->max_frame_bytes = c->opts.max_frame_bytes;
    reply->stream_window = c->opts.stream_window;
    reply->max_streams = c->opts.max_streams;
    reply->session = c->session;
}

static void send_hello_reply(struct agent_conn *c) {
    CordonAgent__Hello reply;
    hello_reply(c, &reply);
    cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
    out.body_case = CORDON_AGENT__ENVELOPE__BODY_HELLO;
    out.hello = &reply;
    agent_conn_send(c, 0, &out);
}

static void on_hello(struct agent_conn *c, const cdn_envelope *env) {
    const CordonAgent__Hello *h = env->hello;
    c->session = h->session;
    CordonAgent__Hello reply;
    hello_reply(c, &reply);
    cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
    out.body_case = CORDON_AGENT__ENVELOPE__BODY_HELLO;
    out.hello = &reply;
    if (h->protocol_version != CDN_PROTOCOL_VERSION) {
        agent_conn_send(c, 0, &out);
        agent_conn_send_error(c, 0, CORDON_AGENT__ERROR_CODE__ERROR_VERSION,
                              "agent speaks protocol %u, host asked for %u", CDN_PROTOCOL_VERSION,
                              h->protocol_version);
        return;
    }
    if (h->max_frame_bytes < CDN_FRAME_MIN_MAX || h->stream_window == 0) {
        agent_conn_send(c, 0, &out);
        agent_conn_send_error(c, 0, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "hello: max_frame_bytes %u (minimum %u) or stream_window %u invalid",
                              h->max_frame_bytes, CDN_FRAME_MIN_MAX, h->stream_window);
        return;
    }
    if (c->opts.take_host_seed)
        take_host_seed(h);
    c->peer_max_frame = h->max_frame_bytes;
    c->peer_window = h->stream_window;
    c->hello_done = true;
    agent_conn_send(c, 0, &out);
}

static bool is_open_request(CordonAgent__Envelope__BodyCase bc) {
    return bc == CORDON_AGENT__ENVELOPE__BODY_EXEC ||
           bc == CORDON_AGENT__ENVELOPE__BODY_FILE_READ ||
           bc == CORDON_AGENT__ENVELOPE__BODY_FILE_WRITE ||
           bc == CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_PUT ||
           bc == CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_GET ||
           bc == CORDON_AGENT__ENVELOPE__BODY_LIST_DIR ||
           bc == CORDON_AGENT__ENVELOPE__BODY_PORT_FORWARD;
}

static size_t data_len(const cdn_envelope *env) {
    switch (env->body_case) {
    case CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA: return env->stdin_data->data.len;
    case CORDON_AGENT__ENVELOPE__BODY_FILE_DATA: return env->file_data->data.len;
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA: return env->archive_data->data.len;
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA: return env->egress_data->data.len;
    default: return 0;
    }
}

static void on_control(struct agent_conn *c, const cdn_envelope *env) {
    switch (env->body_case) {
    case CORDON_AGENT__ENVELOPE__BODY_PING: {
        CordonAgent__Pong pong = CORDON_AGENT__PONG__INIT;
        pong.nonce = env->ping->nonce;
        cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
        out.body_case = CORDON_AGENT__ENVELOPE__BODY_PONG;
        out.pong = &pong;
        agent_conn_send(c, env->stream, &out);
        return;
    }
    case CORDON_AGENT__ENVELOPE__BODY_SHUTDOWN: {
        bool kill = env->shutdown->kill_processes;
        CordonAgent__Done done = CORDON_AGENT__DONE__INIT;
        cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
        out.body_case = CORDON_AGENT__ENVELOPE__BODY_DONE;
        out.done = &done;
        if (c->h.shutdown)
            c->h.shutdown(c->h.ud, kill);
        agent_conn_send(c, env->stream, &out);
        return;
    }
    default:
        agent_conn_send_error(c, env->stream, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "unexpected %s on stream %" PRIu64,
                              cdn_frame_body_name(env->body_case), env->stream);
    }
}

static void close_all_streams(struct agent_conn *c);

static void on_envelope(struct agent_conn *c, const cdn_envelope *env) {
    CordonAgent__Envelope__BodyCase bc = env->body_case;
    if (bc == CORDON_AGENT__ENVELOPE__BODY_HELLO) {
        /* A hello mid-session is a new host on the same port (a serial port does not always
         * show the old one leaving): its predecessor's streams have nobody to report to, and
         * the newcomer numbers its streams from the start. */
        if (c->hello_done && env->hello->session && env->hello->session == c->session) {
            /* The host repeated itself: same session, nothing reset. Its clock is taken again
             * (a host repeats its Hello after resuming a guest that stood still). */
            if (c->opts.take_host_seed)
                take_host_seed(env->hello);
            send_hello_reply(c);
            return;
        }
        if (c->hello_done) {
            close_all_streams(c);
            c->last_opened = 0;
            c->last_own = 0;
            c->hello_done = false;
        }
        on_hello(c, env);
        return;
    }
    if (!c->hello_done) {
        agent_conn_send_error(c, env->stream, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "%s before hello", cdn_frame_body_name(bc));
        return;
    }
    if (bc == CORDON_AGENT__ENVELOPE__BODY_PING || bc == CORDON_AGENT__ENVELOPE__BODY_SHUTDOWN) {
        on_control(c, env);
        return;
    }
    if (is_open_request(bc)) {
        if (env->stream == 0 || env->stream <= c->last_opened) {
            agent_conn_send_error(c, env->stream, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                                  "%s on stream %" PRIu64
                                  ": stream ids must increase (last %" PRIu64 ")",
                                  cdn_frame_body_name(bc), env->stream, c->last_opened);
            return;
        }
        c->last_opened = env->stream;
        if (c->n_streams >= c->opts.max_streams) {
            agent_conn_send_error(c, env->stream, CORDON_AGENT__ERROR_CODE__ERROR_TOO_MANY_STREAMS,
                                  "%zu streams already open (limit %u)", c->n_streams,
                                  c->opts.max_streams);
            return;
        }
        c->h.open(c->h.ud, c, env->stream, env);
        return;
    }
    struct agent_stream *s = find_stream(c, env->stream);
    bool own = env->stream % 2 == 0;
    if (!s) {
        /* A late frame for a stream that already ended is normal; one for a stream never opened
         * is the host's mistake and is answered. */
        if (env->stream == 0 || env->stream > (own ? c->last_own : c->last_opened))
            agent_conn_send_error(c, env->stream, CORDON_AGENT__ERROR_CODE__ERROR_UNKNOWN_STREAM,
                                  "%s for unknown stream %" PRIu64, cdn_frame_body_name(bc),
                                  env->stream);
        return;
    }
    if (bc == CORDON_AGENT__ENVELOPE__BODY_ERROR && own) { /* the host refuses or aborts ours */
        s->ops->on_frame(s, env);                          /* which closes it, unanswered */
        return;
    }
    if (bc == CORDON_AGENT__ENVELOPE__BODY_ERROR) { /* the host cancels this stream */
        uint64_t id = s->id;
        agent_conn_close_stream(c, s);
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED,
                              "stream %" PRIu64 " cancelled by the host", id);
        return;
    }
    if (bc == CORDON_AGENT__ENVELOPE__BODY_CREDIT) {
        uint64_t add = env->credit->bytes;
        s->send_credit = add > UINT64_MAX - s->send_credit ? UINT64_MAX : s->send_credit + add;
        return; /* woken after this read batch */
    }
    size_t n = data_len(env);
    if (!cdn_credit_take(&s->recv, n)) {
        agent_conn_send_error(c, s->id, CORDON_AGENT__ERROR_CODE__ERROR_CREDIT,
                              "%s of %zu bytes exceeds the %" PRIu64 " bytes of credit",
                              cdn_frame_body_name(bc), n, s->recv.left);
        agent_conn_close_stream(c, s);
        return;
    }
    s->ops->on_frame(s, env);
}

static void on_readable(struct agent_conn *c) {
    size_t budget = READ_BUDGET_BYTES;
    while (budget > 0 && !c->closed) {
        uint8_t *p;
        size_t room;
        if (cdn_frame_decoder_space(c->dec, 64 * 1024, &p, &room) < 0) {
            conn_close(c);
            return;
        }
        ssize_t n = read(c->src.fd, p, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) { /* the host hung up (or the port broke) */
            conn_close(c);
            return;
        }
        cdn_frame_decoder_commit(c->dec, (size_t)n);
        budget -= (size_t)n < budget ? (size_t)n : budget;
        for (;;) {
            cdn_envelope *env = NULL;
            _cleanup_err_ cdn_err *err = NULL;
            int r = cdn_frame_decoder_next(c->dec, &env, &err);
            if (r == 0)
                break;
            if (r == -EBADMSG) {
                agent_conn_send_error(c, 0, CORDON_AGENT__ERROR_CODE__ERROR_FRAME, "%s",
                                      cdn_err_msg(err));
                continue;
            }
            if (r < 0) { /* framing lost: say why, then hang up */
                agent_conn_send_error(c, 0, CORDON_AGENT__ERROR_CODE__ERROR_FRAME, "%s",
                                      cdn_err_msg(err));
                conn_close(c);
                return;
            }
            on_envelope(c, env);
            if (c->closed)
                return;
        }
    }
    wake_streams(c);
}

static void dispatch(struct agent_source *src, uint32_t events) {
    struct agent_conn *c = (struct agent_conn *)((char *)src - offsetof(struct agent_conn, src));
    if (events & EPOLLOUT) {
        flush(c);
        wake_streams(c);
        update_events(c);
    }
    if (!c->closed && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        on_readable(c);
}

int agent_conn_new(struct agent_loop *loop, int fd, const struct agent_conn_opts *opts,
                   const struct agent_conn_handlers *handlers, struct agent_conn **out,
                   cdn_err **err) {
    struct agent_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        safe_close(fd);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    c->loop = loop;
    c->src.fd = fd;
    c->src.dispatch = dispatch;
    c->opts = *opts;
    c->h = *handlers;
    c->peer_max_frame = CDN_FRAME_MIN_MAX;
    c->splice.fd = -1;
    c->out_high = 4 * (size_t)DATA_CHUNK_BYTES;
    if (cdn_frame_decoder_new(opts->max_frame_bytes, &c->dec) < 0) {
        c->closed = true;
        agent_conn_free(c);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    int r = agent_loop_add(loop, &c->src, EPOLLIN);
    if (r < 0) {
        c->closed = true;
        agent_conn_free(c);
        return cdn_err_set(err, -r, "epoll_ctl: %s", strerror(-r));
    }
    *out = c;
    return 0;
}

static void close_all_streams(struct agent_conn *c) {
    while (c->streams)
        agent_conn_close_stream(c, c->streams);
}

/* The channel is unusable (hang-up, write error, framing lost): end every stream, stop
 * listening, and tell the owner, who decides whether to reconnect. */
static void conn_close(struct agent_conn *c) {
    if (c->closed)
        return;
    /* Best effort: push out what is queued (an Error saying why) before closing, unless a spliced
     * payload sits in the middle of it. */
    if (!c->splice.active)
        cdn_buf_write_fd(&c->out, c->src.fd);
    c->splice.fd = safe_close(c->splice.fd);
    c->splice.active = false;
    c->closed = true;
    agent_loop_del(c->loop, &c->src);
    close_all_streams(c);
    if (c->h.closed)
        c->h.closed(c->h.ud);
}

void agent_conn_free(struct agent_conn *c) {
    if (!c)
        return;
    c->h.closed = NULL; /* the owner is tearing us down: no callback */
    conn_close(c);
    safe_close(c->src.fd);
    cdn_frame_decoder_free(c->dec);
    cdn_buf_free(&c->out);
    cdn_buf_free(&c->splice.tmp);
    free(c);
}
