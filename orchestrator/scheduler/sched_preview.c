/* SPDX-License-Identifier: Apache-2.0 */
/* Previews: a guest port the policy's previews.ports lists, exposed on the host on 127.0.0.1
 * (a port of the caller's choice or a free one) or on a unix socket in the state folder, never
 * elsewhere. A thread per preview accepts; each connection goes to the sandbox's worker, which
 * relays it over the agent channel (a PortForward stream) and records it on the audit trail when
 * it ends (peer, bytes each way, how long, why it ended). A preview is closed by request (its open
 * connections ended), and all of them when the sandbox pauses, resets or stops. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "evidence.h"
#include "sched_internal.h"

struct preview {
    struct sbx *b;
    uint16_t port;
    int lfd;
    char address[4200];
    char *unix_path;
    pthread_t thread;
    struct preview_conn *live; /* connections being relayed (the worker's) */
    struct preview *next;
};

/* One connection: queued by the accept thread (under mu), then relayed by the worker. */
struct preview_conn {
    struct worker *w;
    struct preview *pv; /* NULL once its preview closed */
    int fd;
    uint16_t port;
    char peer[64];
    uint64_t t0;
    struct preview_conn *next;      /* in b->preview_queue */
    struct preview_conn *live_next; /* in pv->live */
};

static void *accept_loop(void *arg) {
    struct preview *pv = arg;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(pv->lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED || errno == EMFILE))
            continue;
        if (fd < 0)
            return NULL; /* shut down: the preview is closing */
        struct preview_conn *pc = calloc(1, sizeof(*pc));
        if (!pc) {
            close(fd);
            continue;
        }
        pc->fd = fd;
        pc->port = pv->port;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
            snprintf(pc->peer, sizeof(pc->peer), "%s:%u", ip, ntohs(in->sin_port));
        } else {
            snprintf(pc->peer, sizeof(pc->peer), "unix socket");
        }
        struct cdn_sched *s = pv->b->sched;
        pthread_mutex_lock(&s->mu);
        pc->next = pv->b->preview_queue;
        pv->b->preview_queue = pc;
        sched_wake(pv->b->wake);
        pthread_mutex_unlock(&s->mu);
    }
}

static struct preview *find(struct worker *w, uint16_t port) {
    for (struct preview *pv = w->previews; pv; pv = pv->next)
        if (pv->port == port)
            return pv;
    return NULL;
}

static void conn_ended(void *token, uint64_t to_guest, uint64_t from_guest, const char *error) {
    struct preview_conn *pc = token;
    if (pc->pv)
        for (struct preview_conn **pp = &pc->pv->live; *pp; pp = &(*pp)->live_next)
            if (*pp == pc) {
                *pp = pc->live_next;
                break;
            }
    cdn_evidence_event(cdn_session_evidence(pc->w->sess), "preview.connection",
                       json_pack("{s:i, s:s, s:I, s:I, s:I, s:s?}", "port", pc->port, "peer",
                                 pc->peer, "bytes_to_guest", (json_int_t)to_guest,
                                 "bytes_from_guest", (json_int_t)from_guest, "ms",
                                 (json_int_t)(cdn_now_ms() - pc->t0), "error", error));
    free(pc);
}

void sched_preview_relay(struct worker *w) {
    pthread_mutex_lock(&w->s->mu);
    struct preview_conn *q = w->b->preview_queue;
    w->b->preview_queue = NULL;
    pthread_mutex_unlock(&w->s->mu);
    for (struct preview_conn *pc = q, *next; pc; pc = next) {
        next = pc->next;
        struct preview *pv = find(w, pc->port);
        struct cdn_channel *ch = cdn_session_channel(w->sess);
        if (!pv || w->paused || !ch) { /* closed meanwhile */
            close(pc->fd);
            free(pc);
            continue;
        }
        pc->w = w;
        pc->pv = pv;
        pc->t0 = cdn_now_ms();
        pc->live_next = pv->live;
        pv->live = pc;
        cdn_err *e = NULL;
        if (cdn_channel_forward(ch, pc->fd, pc->port, pc, conn_ended, &e) < 0)
            sched_log(w->s, "sandbox %s: preview %u: %s", w->b->id, pc->port, cdn_err_msg(e));
        cdn_err_free(e);
    }
}

static void close_one(struct worker *w, struct preview *pv, const char *why) {
    shutdown(pv->lfd, SHUT_RDWR); /* its accept returns */
    pthread_join(pv->thread, NULL);
    close(pv->lfd);
    if (pv->unix_path) {
        unlink(pv->unix_path);
        free(pv->unix_path);
    }
    struct cdn_channel *ch = cdn_session_channel(w->sess);
    while (pv->live) {
        struct preview_conn *pc = pv->live;
        pv->live = pc->live_next;
        pc->pv = NULL;
        if (ch)
            cdn_channel_forward_abort(ch, pc, "the preview was closed");
    }
    cdn_evidence_event(
        cdn_session_evidence(w->sess), "preview.closed",
        json_pack("{s:i, s:s, s:s}", "port", pv->port, "address", pv->address, "why", why));
    free(pv);
}

void sched_preview_close_all(struct worker *w, const char *why) {
    while (w->previews) {
        struct preview *pv = w->previews;
        w->previews = pv->next;
        close_one(w, pv, why);
    }
    sched_preview_relay(w); /* connections queued meanwhile are closed */
}

/* The listener: 127.0.0.1:host_port (0: a free one) or STATE/previews/ID-PORT.sock. */
static int listen_on(struct worker *w, const struct job *j, struct preview *pv, cdn_err **e) {
    int fd;
    if (j->spec.unix_socket) {
        char dir[4300];
        snprintf(dir, sizeof(dir), "%s/previews", w->s->state_dir);
        mkdir(dir, 0700);
        if (asprintf(&pv->unix_path, "%s/%s-%u.sock", dir, w->b->id, pv->port) < 0)
            return cdn_err_set(e, ENOMEM, "out of memory");
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(pv->unix_path) >= sizeof(sa.sun_path))
            return cdn_err_set(e, ENAMETOOLONG, "%s is too long for a socket", pv->unix_path);
        memcpy(sa.sun_path, pv->unix_path, strlen(pv->unix_path) + 1);
        unlink(pv->unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            chmod(pv->unix_path, 0600) < 0 || listen(fd, 64) < 0) {
            int r = cdn_err_set(e, errno, "preview socket %s: %m", pv->unix_path);
            if (fd >= 0)
                close(fd);
            return r;
        }
        snprintf(pv->address, sizeof(pv->address), "unix:%s", pv->unix_path);
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(j->spec.host_port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, whoever asks */
        socklen_t len = sizeof(sa);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
            int r = cdn_err_set(e, errno, "preview on 127.0.0.1:%u: %m", j->spec.host_port);
            if (fd >= 0)
                close(fd);
            return r;
        }
        snprintf(pv->address, sizeof(pv->address), "127.0.0.1:%u", ntohs(sa.sin_port));
    }
    pv->lfd = fd;
    return 0;
}

static int open_preview(struct worker *w, const struct job *j, char *address, size_t n,
                        cdn_err **e) {
    uint16_t port = j->spec.port;
    if (!port)
        return cdn_err_set(e, EINVAL, "port must be 1-65535");
    if (!cdn_policy_preview_allowed(w->b->policy, port)) {
        char ports[400];
        cdn_policy_preview_ports(w->b->policy, ports, sizeof(ports));
        return cdn_err_set(e, EPERM, "port %u is not in the policy's previews.ports (%s)", port,
                           ports);
    }
    if (w->paused || !w->booted)
        return cdn_err_set(e, EBADFD, "sandbox %s is %s: a preview needs it running", w->b->id,
                           w->paused ? "paused" : "not booted yet");
    struct preview *pv = find(w, port);
    if (pv) { /* open already: the same address */
        snprintf(address, n, "%s", pv->address);
        return 0;
    }
    pv = calloc(1, sizeof(*pv));
    if (!pv)
        return cdn_err_set(e, ENOMEM, "out of memory");
    pv->b = w->b;
    pv->port = port;
    pv->lfd = -1;
    int r = listen_on(w, j, pv, e);
    if (r >= 0 && pthread_create(&pv->thread, NULL, accept_loop, pv) != 0)
        r = cdn_err_set(e, EAGAIN, "cannot start the preview's thread");
    if (r < 0) {
        if (pv->lfd >= 0)
            close(pv->lfd);
        if (pv->unix_path)
            unlink(pv->unix_path);
        free(pv->unix_path);
        free(pv);
        return r;
    }
    pv->next = w->previews;
    w->previews = pv;
    snprintf(address, n, "%s", pv->address);
    cdn_evidence_event(cdn_session_evidence(w->sess), "preview.opened",
                       json_pack("{s:i, s:s, s:s}", "port", port, "address", pv->address, "by",
                                 j->spec.path ? j->spec.path : "?"));
    sched_log(w->s, "sandbox %s: guest port %u previewed on %s", w->b->id, port, pv->address);
    return 0;
}

void sched_preview_job(struct worker *w, struct job *j) {
    struct cdn_job_result res = {.port = j->spec.port};
    snprintf(res.sandbox_id, sizeof(res.sandbox_id), "%s", w->b->id);
    cdn_err *e = NULL;
    int r;
    if (j->spec.kind == CDN_JOB_PREVIEW_OPEN) {
        r = open_preview(w, j, res.address, sizeof(res.address), &e);
    } else {
        struct preview **pp = &w->previews;
        while (*pp && (*pp)->port != j->spec.port)
            pp = &(*pp)->next;
        struct preview *pv = *pp;
        if (!pv) {
            r = cdn_err_set(&e, ENOENT, "sandbox %s has no preview of port %u", w->b->id,
                            j->spec.port);
        } else {
            *pp = pv->next;
            snprintf(res.address, sizeof(res.address), "%s", pv->address);
            char why[400];
            snprintf(why, sizeof(why), "closed by %s", j->spec.path ? j->spec.path : "request");
            close_one(w, pv, why);
            r = 0;
        }
    }
    j->ops->done(j->ud, r, e, &res);
    cdn_err_free(e);
    job_free(j);
}
