/* SPDX-License-Identifier: Apache-2.0 */
/* The egress streams the agent opens (even ids): each EgressOpen is decided and connected on a
 * worker thread through the hooks (DNS and connect block; the pump must not), the verdict comes
 * back through an eventfd, and an open connection is relayed by the pump itself: upstream bytes
 * are read straight into data frames while the guest's credit and the channel's output bound
 * allow, and the guest's bytes are written upstream, credit granted back only once written. So a
 * download of any size holds at most the window and the output bound in host memory. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel_int.h"
#include "cleanup.h"

#define EG_CHUNK_BYTES (256u * 1024u)
#define EG_OUT_HIGH_BYTES (1024u * 1024u)
#define EG_MAX_HOST 255u

enum eg_state { EG_PENDING, EG_OPEN };

struct eg_stream {
    uint64_t id;
    enum eg_state state;
    int fd; /* upstream, -1 until connected */
    void *token;
    struct cdn_credit recv; /* what the agent may still send us */
    uint64_t send_credit;   /* what we may still send the agent */
    bool guest_eof;         /* the agent sent eof: upstream gets SHUT_WR once to_up is written */
    bool eof_sent;          /* upstream ended and we told the agent */
    bool shut_wr;
    bool aborted; /* the agent gave up while we were deciding */
    struct cdn_buf to_up;
    uint64_t up, down;
    int poll_idx;
    /* a preview (opened by us): its end goes here instead of the egress hooks */
    void (*fwd_ended)(void *token, uint64_t to_guest, uint64_t from_guest, const char *error);
    char *fwd_error;
    struct eg_stream *next;
};

/* One decision being made on a worker thread. */
struct eg_job {
    pthread_t th;
    struct chan_egress *eg;
    uint64_t id;
    char host[EG_MAX_HOST + 1];
    uint16_t port;
    bool tunnel;
    struct cdn_channel_egress hooks;
    int fd;
    void *token;
    char why[800];
    bool finished; /* under eg->mu */
    struct eg_job *next;
};

struct chan_egress {
    int efd; /* eventfd: a job finished */
    pthread_mutex_t mu;
    struct eg_job *jobs; /* every job not yet collected (under mu) */
    struct eg_stream *streams;
    size_t n;
    uint64_t last_id;       /* highest stream id the agent opened */
    uint64_t fwd_ended[64]; /* previews we ended lately: frames that crossed are dropped */
    unsigned fwd_ended_next;
};

void cdn_channel_set_egress(struct cdn_channel *ch, const struct cdn_channel_egress *hooks) {
    ch->egress_hooks = *hooks;
    ch->has_egress_hooks = hooks->open != NULL;
}

static struct chan_egress *egress_of(struct cdn_channel *ch) {
    if (ch->egress)
        return ch->egress;
    struct chan_egress *eg = calloc(1, sizeof(*eg));
    if (!eg)
        return NULL;
    eg->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (eg->efd < 0) {
        free(eg);
        return NULL;
    }
    pthread_mutex_init(&eg->mu, NULL);
    return ch->egress = eg;
}

static struct eg_stream *find(struct chan_egress *eg, uint64_t id) {
    for (struct eg_stream *s = eg->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* A relay for stream id (fd: its host side, -1 until connected), in eg's list; NULL: no memory. */
static struct eg_stream *stream_add(struct cdn_channel *ch, struct chan_egress *eg, uint64_t id,
                                    int fd) {
    struct eg_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    *s = (struct eg_stream){.id = id,
                            .fd = fd,
                            .recv = cdn_credit_init(ch->opts.stream_window),
                            .send_credit = ch->peer_window,
                            .poll_idx = -1,
                            .next = eg->streams};
    eg->streams = s;
    eg->n++;
    return s;
}

/* The attempt is over: recorded through the hooks, forgotten here. */
static void stream_end(struct cdn_channel *ch, struct eg_stream *s) {
    struct chan_egress *eg = ch->egress;
    for (struct eg_stream **p = &eg->streams; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            eg->n--;
            break;
        }
    safe_close(s->fd);
    if (s->fwd_ended) {
        /* up: the guest's bytes written to the client; down: the client's sent to the guest */
        s->fwd_ended(s->token, s->down, s->up, s->fwd_error);
        eg->fwd_ended[eg->fwd_ended_next++ % 64] = s->id;
    } else if (ch->egress_hooks.ended) {
        ch->egress_hooks.ended(ch->egress_hooks.ud, s->token, s->up, s->down);
    }
    free(s->fwd_error);
    cdn_buf_free(&s->to_up);
    free(s);
}

/* Ends s with an Error to the agent (which forgets the stream without answering). */
static void stream_abort(struct cdn_channel *ch, struct eg_stream *s, CordonAgent__ErrorCode code,
                         const char *msg) {
    chan_send_error(ch, s->id, code, msg);
    if (s->fwd_ended && !s->fwd_error)
        s->fwd_error = strdup(msg);
    stream_end(ch, s);
}

static void maybe_finish(struct cdn_channel *ch, struct eg_stream *s) {
    if (s->eof_sent && s->guest_eof && cdn_buf_len(&s->to_up) == 0)
        stream_end(ch, s);
}

/* Writes what upstream takes of to_up; credit goes back for what was written. -1: s ended. */
static int write_up(struct cdn_channel *ch, struct eg_stream *s) {
    size_t before = cdn_buf_len(&s->to_up);
    if (before) {
        ssize_t n = cdn_buf_write_fd(&s->to_up, s->fd);
        if (n < 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "egress: writing upstream: %s", strerror((int)-n));
            stream_abort(ch, s, CORDON_AGENT__ERROR_CODE__ERROR_IO, msg);
            return -1;
        }
        chan_grant(ch, s->id, &s->recv, before - cdn_buf_len(&s->to_up));
    }
    if (s->guest_eof && !s->shut_wr && cdn_buf_len(&s->to_up) == 0) {
        shutdown(s->fd, SHUT_WR);
        s->shut_wr = true;
    }
    return 0;
}

/* Reads one chunk from upstream straight into a data frame. -1: s ended. */
static int read_up(struct cdn_channel *ch, struct eg_stream *s) {
    size_t room = ch->peer_max_frame - cdn_frame_data_overhead();
    if (room > EG_CHUNK_BYTES)
        room = EG_CHUNK_BYTES;
    if (room > s->send_credit)
        room = (size_t)s->send_credit;
    if (room == 0)
        return 0;
    struct cdn_frame_data_slot slot;
    if (cdn_frame_data_begin(&ch->out, CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA, s->id, 0, room,
                             &slot) < 0) {
        stream_abort(ch, s, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "egress: out of memory");
        return -1;
    }
    ssize_t n = read(s->fd, slot.payload, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0; /* the slot is simply not committed */
    if (n < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "egress: reading upstream: %s", strerror(errno));
        stream_abort(ch, s, CORDON_AGENT__ERROR_CODE__ERROR_IO, msg);
        return -1;
    }
    cdn_frame_data_end(&ch->out, &slot, (size_t)n, n == 0);
    s->send_credit -= (uint64_t)n;
    s->down += (uint64_t)n;
    if (n == 0)
        s->eof_sent = true;
    return 0;
}

static void *job_run(void *arg) {
    struct eg_job *j = arg;
    j->fd =
        j->hooks.open(j->hooks.ud, j->host, j->port, j->tunnel, &j->token, j->why, sizeof(j->why));
    pthread_mutex_lock(&j->eg->mu);
    j->finished = true;
    pthread_mutex_unlock(&j->eg->mu);
    uint64_t one = 1;
    if (write(j->eg->efd, &one, sizeof(one)) < 0) {
        /* the counter cannot overflow with at most CHAN_EGRESS_MAX jobs */
    }
    return NULL;
}

/* A verdict reached the pump: tell the agent, and relay from here on if allowed. */
static void deliver(struct cdn_channel *ch, struct eg_job *j) {
    struct eg_stream *s = find(ch->egress, j->id);
    if (s)
        s->token = j->token;
    if (ch->egress_hooks.decided)
        ch->egress_hooks.decided(ch->egress_hooks.ud, j->token);
    if (!s) { /* cannot happen: a stream stays until its verdict */
        safe_close(j->fd);
        return;
    }
    if (s->aborted) {
        safe_close(j->fd);
        stream_end(ch, s);
        return;
    }
    if (j->fd < 0) {
        stream_abort(ch, s,
                     j->fd == -EPERM ? CORDON_AGENT__ERROR_CODE__ERROR_REFUSED
                                     : CORDON_AGENT__ERROR_CODE__ERROR_IO,
                     j->why[0] ? j->why : "egress refused");
        return;
    }
    s->fd = j->fd;
    s->state = EG_OPEN;
    CordonAgent__EgressReady ready = CORDON_AGENT__EGRESS_READY__INIT;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EGRESS_READY;
    env.egress_ready = &ready;
    chan_send(ch, s->id, &env, NULL);
}

static void collect_jobs(struct cdn_channel *ch) {
    struct chan_egress *eg = ch->egress;
    uint64_t v;
    while (read(eg->efd, &v, sizeof(v)) > 0) {
    }
    for (;;) {
        struct eg_job *done = NULL;
        pthread_mutex_lock(&eg->mu);
        for (struct eg_job **p = &eg->jobs; *p; p = &(*p)->next)
            if ((*p)->finished) {
                done = *p;
                *p = done->next;
                break;
            }
        pthread_mutex_unlock(&eg->mu);
        if (!done)
            return;
        pthread_join(done->th, NULL);
        deliver(ch, done);
        free(done);
    }
}

static int on_open(struct cdn_channel *ch, uint64_t id, const CordonAgent__EgressOpen *o) {
    struct chan_egress *eg = egress_of(ch);
    if (!eg)
        return chan_fault(ch, ENOMEM, "out of memory");
    if (id <= eg->last_id)
        return chan_fault(ch, EPROTO,
                          "guest fault: egress stream %" PRIu64 " opened after %" PRIu64
                          ": ids must increase",
                          id, eg->last_id);
    eg->last_id = id;
    size_t hlen = strnlen(o->host, EG_MAX_HOST + 1);
    if (hlen == 0 || hlen > EG_MAX_HOST || o->port == 0 || o->port > 65535) {
        chan_send_error(ch, id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                        "egress: the host must be 1-255 bytes and the port 1-65535");
        return 0;
    }
    if (!ch->has_egress_hooks) {
        chan_send_error(ch, id, CORDON_AGENT__ERROR_CODE__ERROR_REFUSED,
                        "egress refused: this sandbox has no network");
        return 0;
    }
    if (eg->n >= CHAN_EGRESS_MAX) {
        chan_send_error(ch, id, CORDON_AGENT__ERROR_CODE__ERROR_REFUSED,
                        "egress refused: the sandbox already has 64 connections open");
        return 0;
    }
    struct eg_job *j = calloc(1, sizeof(*j));
    struct eg_stream *s = j ? stream_add(ch, eg, id, -1) : NULL;
    if (!s) {
        free(j);
        return chan_fault(ch, ENOMEM, "out of memory");
    }
    *j = (struct eg_job){.eg = eg,
                         .id = id,
                         .port = (uint16_t)o->port,
                         .tunnel = o->connect,
                         .hooks = ch->egress_hooks,
                         .fd = -1};
    memcpy(j->host, o->host, hlen);
    pthread_mutex_lock(&eg->mu);
    j->next = eg->jobs;
    eg->jobs = j;
    int r = pthread_create(&j->th, NULL, job_run, j);
    if (r != 0)
        eg->jobs = j->next;
    pthread_mutex_unlock(&eg->mu);
    if (r != 0) {
        free(j);
        stream_abort(ch, s, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL,
                     "egress: cannot start a worker thread");
    }
    return 0;
}

static int on_data(struct cdn_channel *ch, struct eg_stream *s, const CordonAgent__EgressData *d) {
    if (!cdn_credit_take(&s->recv, d->data.len))
        return chan_fault(ch, EPROTO,
                          "guest fault: credit violation: egress stream %" PRIu64
                          " sent %zu bytes with %" PRIu64 " granted",
                          s->id, d->data.len, s->recv.left);
    if (s->aborted)
        return 0;
    if (s->state != EG_OPEN || s->guest_eof)
        return chan_fault(ch, EPROTO, "guest fault: egress data on stream %" PRIu64 " %s", s->id,
                          s->state != EG_OPEN ? "before it was ready" : "after its eof");
    if (d->data.len && cdn_buf_append(&s->to_up, d->data.data, d->data.len) < 0)
        return chan_fault(ch, ENOMEM, "out of memory");
    s->up += d->data.len;
    s->guest_eof = d->eof;
    if (write_up(ch, s) == 0)
        maybe_finish(ch, s);
    return 0;
}

bool chan_egress_owns(struct cdn_channel *ch, uint64_t id) {
    struct chan_egress *eg = ch->egress;
    if (!eg)
        return false;
    if (find(eg, id))
        return true;
    for (unsigned i = 0; i < 64; i++)
        if (eg->fwd_ended[i] == id)
            return true;
    return false;
}

int cdn_channel_forward(struct cdn_channel *ch, int fd, uint16_t port, void *token,
                        void (*ended)(void *token, uint64_t to_guest, uint64_t from_guest,
                                      const char *error),
                        cdn_err **err) {
    struct chan_egress *eg = egress_of(ch);
    if (eg && eg->n >= CHAN_EGRESS_MAX) {
        close(fd);
        return cdn_err_set(err, EAGAIN, "%s: %d relayed connections are open already", ch->name,
                           CHAN_EGRESS_MAX);
    }
    struct eg_stream *s = eg ? stream_add(ch, eg, chan_next_stream_id(ch), fd) : NULL;
    if (!s) {
        close(fd);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    s->token = token;
    s->fwd_ended = ended;
    CordonAgent__PortForward pf = CORDON_AGENT__PORT_FORWARD__INIT;
    pf.port = port;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_PORT_FORWARD;
    env.port_forward = &pf;
    int r = chan_send(ch, s->id, &env, err);
    if (r < 0)
        stream_end(ch, s);
    return r;
}

void cdn_channel_forward_abort(struct cdn_channel *ch, void *token, const char *why) {
    struct chan_egress *eg = ch->egress;
    for (struct eg_stream *s = eg ? eg->streams : NULL; s; s = s->next)
        if (s->fwd_ended && s->token == token) {
            stream_abort(ch, s, CORDON_AGENT__ERROR_CODE__ERROR_CANCELLED, why);
            chan_flush(ch);
            return;
        }
}

int chan_egress_frame(struct cdn_channel *ch, const cdn_envelope *env) {
    CordonAgent__Envelope__BodyCase bc = env->body_case;
    if (bc == CORDON_AGENT__ENVELOPE__BODY_EGRESS_OPEN)
        return on_open(ch, env->stream, env->egress_open);
    struct chan_egress *eg = ch->egress;
    struct eg_stream *s = eg ? find(eg, env->stream) : NULL;
    if (!s) {
        if (eg &&
            (env->stream % 2 ? chan_egress_owns(ch, env->stream) : env->stream <= eg->last_id))
            return 0; /* a frame that crossed our Error or our eof: dropped */
        return chan_fault(ch, EPROTO, "guest fault: %s on stream %" PRIu64 ", which is not open",
                          cdn_frame_body_name(bc), env->stream);
    }
    switch (bc) {
    case CORDON_AGENT__ENVELOPE__BODY_PORT_FORWARD_READY:
        if (!s->fwd_ended || s->state != EG_PENDING)
            return chan_fault(ch, EPROTO, "guest fault: port_forward_ready on stream %" PRIu64,
                              s->id);
        s->state = EG_OPEN;
        return 0;
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA: return on_data(ch, s, env->egress_data);
    case CORDON_AGENT__ENVELOPE__BODY_CREDIT: {
        uint64_t add = env->credit->bytes;
        s->send_credit = add > UINT64_MAX - s->send_credit ? UINT64_MAX : s->send_credit + add;
        return 0;
    }
    case CORDON_AGENT__ENVELOPE__BODY_ERROR: /* the agent gives up: no answer */
        if (s->fwd_ended) {                  /* a preview the guest refused or ended */
            if (!s->fwd_error)
                s->fwd_error = strndup(env->error->message, 512);
            stream_end(ch, s);
        } else if (s->state == EG_PENDING)
            s->aborted = true;
        else
            stream_end(ch, s);
        return 0;
    default:
        return chan_fault(ch, EPROTO, "guest fault: %s on egress stream %" PRIu64,
                          cdn_frame_body_name(bc), s->id);
    }
}

size_t chan_egress_pollfds(struct cdn_channel *ch, struct pollfd *p, size_t max) {
    struct chan_egress *eg = ch->egress;
    if (!eg || max == 0)
        return 0;
    size_t n = 0;
    p[n++] = (struct pollfd){.fd = eg->efd, .events = POLLIN};
    bool out_room = cdn_buf_len(&ch->out) < EG_OUT_HIGH_BYTES;
    for (struct eg_stream *s = eg->streams; s; s = s->next) {
        s->poll_idx = -1;
        if (s->state != EG_OPEN || n >= max)
            continue;
        short ev = 0;
        if (!s->eof_sent && s->send_credit > 0 && out_room)
            ev |= POLLIN;
        if (cdn_buf_len(&s->to_up) > 0)
            ev |= POLLOUT;
        if (!ev)
            continue;
        s->poll_idx = (int)n;
        p[n++] = (struct pollfd){.fd = s->fd, .events = ev};
    }
    return n;
}

void chan_egress_events(struct cdn_channel *ch, const struct pollfd *p, size_t n) {
    struct chan_egress *eg = ch->egress;
    if (!eg || n == 0)
        return;
    for (struct eg_stream *s = eg->streams, *next; s && !ch->fault; s = next) {
        next = s->next;
        if (s->poll_idx < 0 || (size_t)s->poll_idx >= n)
            continue;
        short re = p[s->poll_idx].revents;
        if ((re & POLLOUT) && write_up(ch, s) < 0)
            continue;
        if ((re & (POLLIN | POLLHUP | POLLERR)) && !s->eof_sent && read_up(ch, s) < 0)
            continue;
        maybe_finish(ch, s);
    }
    if (!ch->fault && (p[0].revents & POLLIN))
        collect_jobs(ch);
    chan_flush(ch);
}

void chan_egress_free(struct cdn_channel *ch) {
    struct chan_egress *eg = ch->egress;
    if (!eg)
        return;
    /* pending decisions finish within the connect timeout: wait for them, record them */
    for (;;) {
        pthread_mutex_lock(&eg->mu);
        struct eg_job *j = eg->jobs;
        if (j)
            eg->jobs = j->next;
        pthread_mutex_unlock(&eg->mu);
        if (!j)
            break;
        pthread_join(j->th, NULL);
        struct eg_stream *s = find(eg, j->id);
        if (s) {
            s->token = j->token;
            s->aborted = true;
        }
        if (ch->egress_hooks.decided)
            ch->egress_hooks.decided(ch->egress_hooks.ud, j->token);
        safe_close(j->fd);
        free(j);
    }
    while (eg->streams)
        stream_end(ch, eg->streams);
    safe_close(eg->efd);
    pthread_mutex_destroy(&eg->mu);
    free(eg);
    ch->egress = NULL;
}
