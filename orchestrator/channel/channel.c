/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_channel core: handshake, the pump (poll, read, decode, dispatch, flush), stream table and
 * credit accounting. The guest is hostile: a frame that breaks the protocol (too large, over
 * credit, for a stream never opened, of the wrong kind) ends the channel with a guest fault. */
#include "channel_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#define HELLO_REPEAT_MS 1000
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"

#define HOST_VERSION "cordon-host 0.1.0"
#define READ_BUDGET_BYTES (4u * 1024u * 1024u)
/* One read takes at least a whole data frame: fewer wake-ups per byte. */
#define READ_CHUNK_BYTES (512u * 1024u)
#define SEND_CHUNK_BYTES (256u * 1024u)
#define OUT_HIGH_BYTES (1024u * 1024u)
#define MAX_PEER_CAPS 64u
/* An agent that never confirms cancellations would make tombstones pile up: past this many it is
 * treated as a guest fault. */
#define MAX_TOMBSTONES 256u

uint64_t chan_deadline(const struct cdn_channel *ch, int timeout_ms) {
    return cdn_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : ch->opts.default_timeout_ms);
}

int chan_remaining_ms(uint64_t deadline) {
    uint64_t now = cdn_now_ms();
    if (now >= deadline)
        return 0;
    uint64_t left = deadline - now;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

int chan_fail(struct cdn_channel *ch, cdn_err **err) {
    return cdn_err_set(err, cdn_err_code(ch->fault), "%s", cdn_err_msg(ch->fault));
}

int chan_fault(struct cdn_channel *ch, int code, const char *fmt, ...) {
    if (!ch->fault) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        cdn_err_set(&ch->fault, code, "%s: %s", ch->name, n >= 0 ? msg : "channel failed");
        shutdown(ch->fd, SHUT_RDWR);
    }
    return -cdn_err_code(ch->fault);
}

int chan_flush(struct cdn_channel *ch) {
    ssize_t n = cdn_buf_write_fd(&ch->out, ch->fd);
    if (n < 0)
        return chan_fault(ch, (int)-n, "writing to the agent: %s", strerror((int)-n));
    return 0;
}

int chan_send(struct cdn_channel *ch, uint64_t id, cdn_envelope *env, cdn_err **err) {
    if (ch->fault)
        return chan_fail(ch, err);
    env->stream = id;
    uint32_t max = ch->peer_max_frame ? ch->peer_max_frame : CDN_FRAME_MIN_MAX;
    int r = cdn_frame_encode(&ch->out, env, max, err);
    if (r < 0)
        return cdn_err_prefix(err, "%s", ch->name);
    if (chan_flush(ch) < 0)
        return chan_fail(ch, err);
    return 0;
}

struct hstream *chan_stream_new(struct cdn_channel *ch, enum hstream_kind kind) {
    struct hstream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->id = chan_next_stream_id(ch);
    s->kind = kind;
    s->recv = cdn_credit_init(ch->opts.stream_window);
    s->send_credit = ch->peer_window;
    s->next = ch->streams;
    ch->streams = s;
    return s;
}

struct hstream *chan_stream_find(struct cdn_channel *ch, uint64_t id) {
    for (struct hstream *s = ch->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static void stream_free(struct cdn_channel *ch, struct hstream *s) {
    for (struct hstream **p = &ch->streams; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    cdn_err_free(s->err);
    cdn_dir_listing_free(s->listing);
    free(s);
}

void chan_cancel(struct cdn_channel *ch, struct hstream *s, const char *why) {
    s->on_data = NULL;
    if (s->done || s->cancelled)
        return;
    s->cancelled = true;
    chan_send_error(ch, s->id, CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED, why);
}

void chan_send_error(struct cdn_channel *ch, uint64_t id, CordonAgent__ErrorCode code,
                     const char *msg) {
    CordonAgent__Error e = CORDON_AGENT__ERROR__INIT;
    e.code = code;
    e.message = (char *)msg;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_ERROR;
    env.error = &e;
    chan_send(ch, id, &env, NULL);
}

/* Ownership: a stream belongs to the call that opened it until that call releases it. A
 * finished stream is freed at once; an unfinished one is cancelled and kept as a tombstone (still
 * enforcing credit, so late frames are neither a fault nor unbounded) until the agent ends it. */
void chan_stream_release(struct cdn_channel *ch, struct hstream *s) {
    if (s->done || ch->fault) {
        stream_free(ch, s);
        return;
    }
    s->released = true;
    if (++ch->n_tombstones > MAX_TOMBSTONES) {
        chan_fault(ch, EPROTO, "guest fault: %u cancelled streams were never ended by the agent",
                   MAX_TOMBSTONES);
        return;
    }
    chan_cancel(ch, s, "released by the host");
}

void chan_grant(struct cdn_channel *ch, uint64_t id, struct cdn_credit *recv, size_t n) {
    uint64_t bytes = cdn_credit_consume(recv, n, ch->opts.stream_window);
    if (!bytes)
        return;
    CordonAgent__Credit cr = CORDON_AGENT__CREDIT__INIT;
    cr.bytes = bytes;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_CREDIT;
    env.credit = &cr;
    chan_send(ch, id, &env, NULL);
}

/* Marks s finished; a released tombstone has nobody waiting and goes at once. */
static void finish(struct cdn_channel *ch, struct hstream *s) {
    s->done = true;
    if (s->released) {
        ch->n_tombstones--;
        stream_free(ch, s);
    }
}

static const char *kind_name(enum hstream_kind k) {
    static const char *names[] = {"exec",        "file_read", "file_write", "archive_put",
                                  "archive_get", "ping",      "list_dir"};
    return names[k];
}

static int errno_for(CordonAgent__ErrorCode code) {
    switch (code) {
    case CORDON_AGENT__ERROR_CODE__ERROR_NOT_FOUND: return ENOENT;
    case CORDON_AGENT__ERROR_CODE__ERROR_REFUSED: return EPERM;
    case CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST: return EINVAL;
    case CORDON_AGENT__ERROR_CODE__ERROR_TOO_MANY_STREAMS: return EAGAIN;
    case CORDON_AGENT__ERROR_CODE__ERROR_VERSION: return EPROTO;
    case CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED: return ECANCELED;
    default: return EIO;
    }
}

static int on_data_frame(struct cdn_channel *ch, struct hstream *s, const cdn_envelope *env, int fd,
                         const ProtobufCBinaryData *d, bool eof) {
    if (!cdn_credit_take(&s->recv, d->len))
        return chan_fault(ch, EPROTO,
                          "guest fault: credit violation: stream %" PRIu64 " sent %zu bytes with "
                          "%" PRIu64 " granted",
                          s->id, d->len, s->recv.left);
    if (s->on_data && d->len > 0 && s->on_data(s->ud, fd, d->data, d->len) < 0)
        chan_cancel(ch, s, "refused by the host");
    if (ch->fault)
        return -1;
    chan_grant(ch, s->id, &s->recv, d->len);
    (void)env;
    if (eof) {
        s->data_eof = true;
        finish(ch, s);
    }
    return 0;
}

static bool body_fits(enum hstream_kind k, CordonAgent__Envelope__BodyCase bc) {
    switch (bc) {
    case CORDON_AGENT__ENVELOPE__BODY_STARTED:
    case CORDON_AGENT__ENVELOPE__BODY_OUTPUT:
    case CORDON_AGENT__ENVELOPE__BODY_EXIT: return k == HS_EXEC;
    case CORDON_AGENT__ENVELOPE__BODY_FILE_DATA: return k == HS_FILE_READ;
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA: return k == HS_ARCHIVE_GET;
    case CORDON_AGENT__ENVELOPE__BODY_DONE: return k == HS_FILE_WRITE || k == HS_ARCHIVE_PUT;
    case CORDON_AGENT__ENVELOPE__BODY_PONG: return k == HS_PING;
    case CORDON_AGENT__ENVELOPE__BODY_DIR_LISTING: return k == HS_LIST_DIR;
    case CORDON_AGENT__ENVELOPE__BODY_CREDIT:
    case CORDON_AGENT__ENVELOPE__BODY_ERROR: return true;
    default: return false;
    }
}

static void on_exit_msg(struct hstream *s, const CordonAgent__Exit *e) {
    s->exit = (struct cdn_exec_result){.pid = s->pid,
                                       .exit_code = e->exit_code,
                                       .signal = (int)e->signal,
                                       .timed_out = e->timed_out,
                                       .output_truncated = e->output_truncated,
                                       .user_ms = e->user_ms,
                                       .sys_ms = e->sys_ms,
                                       .max_rss_kib = e->max_rss_kib,
                                       .duration_ms = e->duration_ms,
                                       .stdout_bytes = e->stdout_bytes,
                                       .stderr_bytes = e->stderr_bytes};
}

static int on_hello(struct cdn_channel *ch, const CordonAgent__Hello *h) {
    /* The agent echoes our session. Another one is an answer to an earlier host's Hello: a
     * guest restored from a save (a warm pool's clone) may still send one it owed the host that
     * booted it. Not ours: read and dropped, before or after our own. (None at all is an agent
     * older than sessions: its hello is read, to say which protocol it speaks.) */
    if (h->session && h->session != ch->session)
        return 0;
    if (ch->hello_seen)
        return 0; /* the answer to a repeated Hello of ours */
    ch->hello_seen = true;
    ch->peer_version = h->protocol_version;
    ch->peer_software = strndup(h->software_version, 256);
    size_t n = h->n_capabilities < MAX_PEER_CAPS ? h->n_capabilities : MAX_PEER_CAPS;
    ch->peer_caps = calloc(n + 1, sizeof(char *));
    if (!ch->peer_software || !ch->peer_caps)
        return chan_fault(ch, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if ((ch->peer_caps[ch->n_peer_caps] = strndup(h->capabilities[i], 64)))
            ch->n_peer_caps++;
    ch->peer_max_frame = h->max_frame_bytes;
    ch->peer_window = h->stream_window;
    return 0;
}

uint64_t chan_next_stream_id(struct cdn_channel *ch) {
    uint64_t id = ch->next_id;
    ch->next_id += 2; /* host streams are odd */
    return id;
}

static int dispatch(struct cdn_channel *ch, const cdn_envelope *env) {
    CordonAgent__Envelope__BodyCase bc = env->body_case;
    if (env->stream == 0) {
        if (bc == CORDON_AGENT__ENVELOPE__BODY_HELLO)
            return on_hello(ch, env->hello);
        if (bc == CORDON_AGENT__ENVELOPE__BODY_ERROR)
            return chan_fault(ch, errno_for(env->error->code), "agent: %.512s",
                              env->error->message);
        if (bc == CORDON_AGENT__ENVELOPE__BODY_DONE && ch->shutdown_sent) {
            ch->shutdown_acked = true;
            return chan_fault(ch, EPIPE, "the agent has shut down");
        }
        return chan_fault(ch, EPROTO, "guest fault: unexpected %s on stream 0",
                          cdn_frame_body_name(bc));
    }
    if (env->stream % 2 == 0 || chan_egress_owns(ch, env->stream)) /* egress, or a preview */
        return chan_egress_frame(ch, env);
    struct hstream *s = chan_stream_find(ch, env->stream);
    if (!s || s->done)
        return chan_fault(ch, EPROTO, "guest fault: %s on stream %" PRIu64 ", which is not open",
                          cdn_frame_body_name(bc), env->stream);
    if (!body_fits(s->kind, bc))
        return chan_fault(ch, EPROTO, "guest fault: %s on %s stream %" PRIu64,
                          cdn_frame_body_name(bc), kind_name(s->kind), s->id);
    switch (bc) {
    case CORDON_AGENT__ENVELOPE__BODY_STARTED: s->pid = env->started->pid; return 0;
    case CORDON_AGENT__ENVELOPE__BODY_OUTPUT: {
        uint32_t fd = env->output->fd;
        if (fd != 1 && fd != 2)
            return chan_fault(ch, EPROTO, "guest fault: output on fd %u", fd);
        return on_data_frame(ch, s, env, (int)fd, &env->output->data, false);
    }
    case CORDON_AGENT__ENVELOPE__BODY_FILE_DATA:
        return on_data_frame(ch, s, env, 0, &env->file_data->data, env->file_data->eof);
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA:
        return on_data_frame(ch, s, env, 0, &env->archive_data->data, env->archive_data->eof);
    case CORDON_AGENT__ENVELOPE__BODY_EXIT: on_exit_msg(s, env->exit); break;
    case CORDON_AGENT__ENVELOPE__BODY_DIR_LISTING:
        if (chan_dir_listing(ch, s, env->dir_listing) < 0)
            return -1;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_DONE:
        s->done_bytes = env->done->bytes;
        s->done_entries = env->done->entries;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_CREDIT: {
        uint64_t add = env->credit->bytes;
        s->send_credit = add > UINT64_MAX - s->send_credit ? UINT64_MAX : s->send_credit + add;
        return 0;
    }
    case CORDON_AGENT__ENVELOPE__BODY_ERROR:
        if (!s->err)
            cdn_err_set(&s->err, errno_for(env->error->code), "%s: %s stream %" PRIu64 ": %.1024s",
                        ch->name, kind_name(s->kind), s->id, env->error->message);
        break;
    default: break; /* Pong */
    }
    finish(ch, s);
    return 0;
}

static int read_frames(struct cdn_channel *ch) {
    size_t budget = READ_BUDGET_BYTES;
    while (budget > 0 && !ch->fault) {
        uint8_t *p;
        size_t room;
        if (cdn_frame_decoder_space(ch->dec, READ_CHUNK_BYTES, &p, &room) < 0)
            return chan_fault(ch, ENOMEM, "out of memory");
        ssize_t n = read(ch->fd, p, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return chan_fault(ch, errno, "reading from the agent: %m");
        if (n == 0)
            return chan_fault(ch, EPIPE, "the agent closed the channel");
        cdn_frame_decoder_commit(ch->dec, (size_t)n);
        budget -= (size_t)n < budget ? (size_t)n : budget;
        for (;;) {
            cdn_envelope *env;
            _cleanup_err_ cdn_err *derr = NULL;
            int r = cdn_frame_decoder_next(ch->dec, &env, &derr);
            if (r == 0)
                break;
            if (r < 0)
                return chan_fault(ch, EPROTO, "guest fault: %s", cdn_err_msg(derr));
            if (dispatch(ch, env) < 0 || ch->fault)
                return -1;
        }
    }
    return 0;
}

#define CANCEL_SLICE_MS 100

static bool chan_cancelled(const struct cdn_channel *ch) {
    return ch->opts.cancel && *ch->opts.cancel;
}

/* One wait on the channel (and on wake_fd when >= 0: 1 is returned when it is readable). */
static int pump_with(struct cdn_channel *ch, int wake_fd, int timeout_ms, cdn_err **err) {
    if (ch->fault)
        return chan_fail(ch, err);
    if (chan_cancelled(ch))
        return cdn_err_set(err, EINTR, "%s: cancelled", ch->name);
    if (ch->opts.cancel && (timeout_ms < 0 || timeout_ms > CANCEL_SLICE_MS))
        timeout_ms = CANCEL_SLICE_MS; /* callers loop to their deadline: the flag is seen */
    struct pollfd pfd[3 + CHAN_EGRESS_MAX] = {{.fd = ch->fd, .events = POLLIN},
                                              {.fd = wake_fd, .events = POLLIN}};
    if (cdn_buf_len(&ch->out) > 0)
        pfd[0].events |= POLLOUT;
    size_t neg = chan_egress_pollfds(ch, pfd + 2, CHAN_EGRESS_MAX + 1);
    int n = poll(pfd, 2 + neg, timeout_ms);
    if (n < 0 && errno != EINTR)
        return cdn_err_set(err, errno, "%s: poll: %m", ch->name);
    if (n > 0) {
        if (pfd[0].revents & POLLOUT)
            chan_flush(ch);
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
            read_frames(ch);
        if (!ch->fault && neg)
            chan_egress_events(ch, pfd + 2, neg);
        if (!ch->fault)
            chan_flush(ch);
    }
    if (!ch->fault && chan_cancelled(ch))
        return cdn_err_set(err, EINTR, "%s: cancelled", ch->name);
    if (ch->fault)
        return chan_fail(ch, err);
    return n > 0 && wake_fd >= 0 && (pfd[1].revents & POLLIN) ? 1 : 0;
}

int chan_pump(struct cdn_channel *ch, int timeout_ms, cdn_err **err) {
    return pump_with(ch, -1, timeout_ms, err);
}

int cdn_channel_poll(struct cdn_channel *ch, int timeout_ms, cdn_err **err) {
    return chan_pump(ch, timeout_ms, err);
}

int cdn_channel_poll_wake(struct cdn_channel *ch, int wake_fd, int timeout_ms, cdn_err **err) {
    return pump_with(ch, wake_fd, timeout_ms, err);
}

int chan_wait_done(struct cdn_channel *ch, struct hstream *s, uint64_t deadline, const char *what,
                   cdn_err **err) {
    while (!s->done && !s->cancelled) {
        int left = chan_remaining_ms(deadline);
        if (left == 0)
            return cdn_err_set(err, ETIMEDOUT, "%s: %s did not finish in time", ch->name, what);
        int r = chan_pump(ch, left, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int chan_finish_stream(struct cdn_channel *ch, struct hstream *s, uint64_t deadline,
                       const char *what, cdn_err **err) {
    int r = chan_wait_done(ch, s, deadline, what, err);
    if (r == 0 && s->err)
        r = cdn_err_set(err, cdn_err_code(s->err), "%s", cdn_err_msg(s->err));
    return r;
}

int chan_open_stream(struct cdn_channel *ch, enum hstream_kind kind, cdn_envelope *env,
                     struct hstream **out, cdn_err **err) {
    if (ch->fault)
        return chan_fail(ch, err);
    struct hstream *s = chan_stream_new(ch, kind);
    if (!s)
        return cdn_err_set(err, ENOMEM, "out of memory");
    int r = chan_send(ch, s->id, env, err);
    if (r < 0) {
        s->done = true;
        chan_stream_release(ch, s);
        return r;
    }
    *out = s;
    return 0;
}

int chan_send_data(struct cdn_channel *ch, struct hstream *s, CordonAgent__Envelope__BodyCase kind,
                   const uint8_t *data, size_t len, bool eof, uint64_t deadline, cdn_err **err) {
    bool sent_eof = false;
    while ((len > 0 || (eof && !sent_eof))) {
        if (ch->fault)
            return chan_fail(ch, err);
        if (s->done || s->cancelled)
            return s->err ? cdn_err_set(err, cdn_err_code(s->err), "%s", cdn_err_msg(s->err))
                          : cdn_err_set(err, ECANCELED, "%s: stream %" PRIu64 " ended early",
                                        ch->name, s->id);
        if ((len > 0 && s->send_credit == 0) || cdn_buf_len(&ch->out) >= OUT_HIGH_BYTES) {
            int left = chan_remaining_ms(deadline);
            if (left == 0)
                return cdn_err_set(err, ETIMEDOUT, "%s: agent granted no credit in time", ch->name);
            int r = chan_pump(ch, left, err);
            if (r < 0)
                return r;
            continue;
        }
        size_t chunk = len;
        size_t max = ch->peer_max_frame - cdn_frame_data_overhead();
        if (chunk > max)
            chunk = max;
        if (chunk > SEND_CHUNK_BYTES)
            chunk = SEND_CHUNK_BYTES;
        if (chunk > s->send_credit)
            chunk = (size_t)s->send_credit;
        bool last = eof && chunk == len;
        struct cdn_frame_data_slot slot;
        if (cdn_frame_data_begin(&ch->out, kind, s->id, 0, chunk, &slot) < 0)
            return cdn_err_set(err, ENOMEM, "out of memory");
        memcpy(slot.payload, data, chunk);
        cdn_frame_data_end(&ch->out, &slot, chunk, last);
        s->send_credit -= chunk;
        data += chunk;
        len -= chunk;
        sent_eof = last;
        if (chan_flush(ch) < 0)
            return chan_fail(ch, err);
    }
    return 0;
}

/* Our Hello in env: the limits, the session, and the guest's clock and RNG seed from ours
 * (applied when the agent is told to take them); h and seed hold what env points to. */
static void hello_fill(struct cdn_channel *ch, cdn_envelope *env, CordonAgent__Hello *h,
                       uint8_t seed[32]) {
    cordon_agent__envelope__init(env);
    env->body_case = CORDON_AGENT__ENVELOPE__BODY_HELLO;
    env->hello = h;
    cordon_agent__hello__init(h);
    h->protocol_version = ch->opts.protocol_version;
    h->software_version = (char *)HOST_VERSION;
    h->max_frame_bytes = ch->opts.max_frame_bytes;
    h->stream_window = ch->opts.stream_window;
    h->max_streams = 1024;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    h->host_unix_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    if (getrandom(seed, 32, 0) == 32) {
        h->entropy.data = seed;
        h->entropy.len = 32;
    }
    while (!ch->session && getrandom(&ch->session, sizeof(ch->session), 0) < 0)
        ;
    h->session = ch->session;
}

int cdn_channel_open(int fd, const struct cdn_channel_opts *opts, struct cdn_channel **out,
                     cdn_err **err) {
    _cleanup_close_ int owned = fd;
    _cleanup_(cdn_channel_freep) struct cdn_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return cdn_err_set(err, ENOMEM, "out of memory");
    ch->opts = opts ? *opts : (struct cdn_channel_opts){0};
    ch->fd = TAKE_FD(owned);
    ch->next_id = 1;
    if (!ch->opts.max_frame_bytes)
        ch->opts.max_frame_bytes = CDN_FRAME_DEFAULT_MAX;
    if (!ch->opts.stream_window)
        ch->opts.stream_window = 4u << 20;
    if (!ch->opts.protocol_version)
        ch->opts.protocol_version = CDN_PROTOCOL_VERSION;
    if (ch->opts.handshake_timeout_ms <= 0)
        ch->opts.handshake_timeout_ms = 10000;
    if (ch->opts.default_timeout_ms <= 0)
        ch->opts.default_timeout_ms = 60000;
    ch->name = strdup(ch->opts.name ? ch->opts.name : "agent");
    if (!ch->name || cdn_frame_decoder_new(ch->opts.max_frame_bytes, &ch->dec) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    int fl = fcntl(ch->fd, F_GETFL);
    if (fl < 0 || fcntl(ch->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return cdn_err_set(err, errno, "%s: fcntl: %m", ch->name);

    CordonAgent__Hello h;
    uint8_t seed[32];
    cdn_envelope env;
    hello_fill(ch, &env, &h, seed);
    uint64_t deadline = chan_deadline(ch, ch->opts.handshake_timeout_ms);
    while (!ch->hello_seen) {
        int left = chan_remaining_ms(deadline);
        if (left == 0)
            return cdn_err_set(err, ETIMEDOUT, "%s: agent did not answer hello within %d ms",
                               ch->name, ch->opts.handshake_timeout_ms);
        /* Sent again each second until answered: a guest reopening its serial port drops what
         * arrives meanwhile (same session: the agent does not start over). */
        int r = chan_send(ch, 0, &env, err);
        if (r < 0)
            return r;
        /* A version error from the agent arrives right after its hello: read both. */
        if (chan_pump(ch, left < HELLO_REPEAT_MS ? left : HELLO_REPEAT_MS, err) < 0 &&
            !ch->hello_seen)
            return -EPROTO;
    }
    if (ch->peer_version != ch->opts.protocol_version)
        return cdn_err_set(err, EPROTO,
                           "%s: agent %s speaks protocol %u, this host speaks %u: rebuild the "
                           "guest image with a matching cordon-agent",
                           ch->name, ch->peer_software, ch->peer_version,
                           ch->opts.protocol_version);
    if (ch->fault)
        return chan_fail(ch, err);
    if (ch->peer_max_frame < CDN_FRAME_MIN_MAX || ch->peer_window == 0)
        return cdn_err_set(err, EPROTO, "%s: agent offered max frame %u and window %u", ch->name,
                           ch->peer_max_frame, ch->peer_window);
    *out = TAKE_PTR(ch);
    return 0;
}

void cdn_channel_free(struct cdn_channel *ch) {
    if (!ch)
        return;
    while (ch->streams)
        stream_free(ch, ch->streams);
    chan_egress_free(ch);
    safe_close(ch->fd);
    cdn_frame_decoder_free(ch->dec);
    cdn_buf_free(&ch->out);
    cdn_err_free(ch->fault);
    for (size_t i = 0; i < ch->n_peer_caps; i++)
        free(ch->peer_caps[i]);
    free(ch->peer_caps);
    free(ch->peer_software);
    free(ch->name);
    free(ch);
}

void cdn_channel_freep(struct cdn_channel **ch) {
    cdn_channel_free(*ch);
    *ch = NULL;
}

const char *cdn_channel_peer_version(const struct cdn_channel *ch) { return ch->peer_software; }

bool cdn_channel_peer_has(const struct cdn_channel *ch, const char *cap) {
    for (size_t i = 0; i < ch->n_peer_caps; i++)
        if (strcmp(ch->peer_caps[i], cap) == 0)
            return true;
    return false;
}

int cdn_channel_fd(const struct cdn_channel *ch) { return ch->fd; }

int cdn_channel_ping(struct cdn_channel *ch, int timeout_ms, cdn_err **err) {
    struct hstream *s = chan_stream_new(ch, HS_PING);
    if (!s)
        return cdn_err_set(err, ENOMEM, "out of memory");
    CordonAgent__Ping p = CORDON_AGENT__PING__INIT;
    p.nonce = s->id;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_PING;
    env.ping = &p;
    int r = chan_send(ch, s->id, &env, err);
    if (r >= 0)
        r = chan_wait_done(ch, s, chan_deadline(ch, timeout_ms), "ping", err);
    stream_free(ch, s); /* pings carry no data: nothing late can count against credit */
    return r;
}

int cdn_channel_shutdown(struct cdn_channel *ch, bool kill_processes, int timeout_ms,
                         cdn_err **err) {
    CordonAgent__Shutdown sd = CORDON_AGENT__SHUTDOWN__INIT;
    sd.kill_processes = kill_processes;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_SHUTDOWN;
    env.shutdown = &sd;
    int r = chan_send(ch, 0, &env, err);
    if (r < 0)
        return r;
    ch->shutdown_sent = true;
    /* The agent answers Done on stream 0; the channel is finished after that. */
    uint64_t deadline = chan_deadline(ch, timeout_ms);
    while (!ch->fault) {
        int left = chan_remaining_ms(deadline);
        if (left == 0)
            return cdn_err_set(err, ETIMEDOUT, "%s: agent did not shut down in time", ch->name);
        chan_pump(ch, left, NULL);
    }
    return ch->shutdown_acked ? 0 : chan_fail(ch, err);
}

int cdn_channel_reseed(struct cdn_channel *ch, int timeout_ms, cdn_err **err) {
    CordonAgent__Hello h;
    uint8_t seed[32];
    cdn_envelope env;
    hello_fill(ch, &env, &h, seed);
    int r = chan_send(ch, 0, &env, err);
    explicit_bzero(seed, sizeof(seed));
    /* Frames are handled in order: once the ping is answered the Hello was taken. */
    return r < 0 ? r : cdn_channel_ping(ch, timeout_ms, err);
}
