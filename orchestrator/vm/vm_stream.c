/* SPDX-License-Identifier: Apache-2.0 */
#include "vm_stream.h"
#include "vm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#define CHUNK (64 * 1024)

struct vm_stream {
    virStreamPtr st;
    int fd; /* our end of the socketpair */
    pthread_t in, out;
    bool in_started, out_started;
};

/* guest -> host: the stream into the socketpair, until either ends. */
static void *pump_in(void *arg) {
    struct vm_stream *s = arg;
    char *buf = malloc(CHUNK);
    for (ssize_t n; buf && (n = virStreamRecv(s->st, buf, CHUNK)) > 0;) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(s->fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    free(buf);
    shutdown(s->fd, SHUT_WR); /* the channel sees the guest's end */
    return NULL;
}

/* host -> guest: the socketpair into the stream, until either ends. */
static void *pump_out(void *arg) {
    struct vm_stream *s = arg;
    char *buf = malloc(CHUNK);
    for (ssize_t n; buf;) {
        n = read(s->fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            int w = virStreamSend(s->st, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    free(buf);
    return NULL;
}

int vm_stream_open(virConnectPtr conn, virDomainPtr dom, const char *channel,
                   struct vm_stream **out, int *fd, cdn_err **err) {
    struct vm_stream *s = calloc(1, sizeof(*s));
    int pair[2] = {-1, -1};
    if (!s)
        return cdn_err_set(err, ENOMEM, "out of memory");
    s->fd = -1;
    if (!(s->st = virStreamNew(conn, 0))) {
        free(s);
        return cdn_err_set(err, EIO, "a libvirt stream for the agent's channel: %s",
                           virGetLastErrorMessage());
    }
    if (virDomainOpenChannel(dom, channel, s->st, VIR_DOMAIN_CHANNEL_FORCE) < 0) {
        int r = cdn_err_set(err, EIO, "opening channel %s over libvirt: %s", channel,
                            virGetLastErrorMessage());
        vm_stream_close(s);
        return r;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
        int r = cdn_err_set(err, errno, "socketpair: %m");
        vm_stream_close(s);
        return r;
    }
    s->fd = pair[1];
    s->in_started = pthread_create(&s->in, NULL, pump_in, s) == 0;
    s->out_started = s->in_started && pthread_create(&s->out, NULL, pump_out, s) == 0;
    if (!s->out_started) {
        close(pair[0]);
        vm_stream_close(s);
        return cdn_err_set(err, EAGAIN, "cannot start the channel's threads");
    }
    *fd = pair[0];
    *out = s;
    return 0;
}

void vm_stream_abandon(struct vm_stream *s) {
    if (!s)
        return;
    /* The sending side ends with our end of the pair; the receiving one waits on the host. The
     * stream and its threads stay, reachable from those threads. */
    if (s->fd >= 0)
        shutdown(s->fd, SHUT_RDWR);
    if (s->in_started)
        pthread_detach(s->in);
    if (s->out_started)
        pthread_detach(s->out);
    vm_keep_forever(s);
}

void vm_stream_close(struct vm_stream *s) {
    if (!s)
        return;
    /* Aborting the stream ends a receive in progress; shutting our end ends a read. */
    virStreamAbort(s->st);
    if (s->fd >= 0)
        shutdown(s->fd, SHUT_RDWR);
    if (s->in_started)
        pthread_join(s->in, NULL);
    if (s->out_started)
        pthread_join(s->out, NULL);
    virStreamFree(s->st);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}
