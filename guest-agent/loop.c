/* SPDX-License-Identifier: Apache-2.0 */
/* agent_loop: epoll + signalfd. Signals are blocked before anything else runs so none is lost
 * between fork and exec or delivered to the wrong thread; children get them unblocked. */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

struct agent_loop {
    int epfd;
    struct agent_source sig;
    agent_signal_fn on_signal;
    void *on_signal_ud;
    bool stopping;
    int code;
};

static const int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};

static void dispatch_signal(struct agent_source *src, uint32_t events) {
    (void)events;
    struct agent_loop *l = (struct agent_loop *)((char *)src - offsetof(struct agent_loop, sig));
    struct signalfd_siginfo si;
    while (read(src->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (l->on_signal)
            l->on_signal(l->on_signal_ud, (int)si.ssi_signo);
    }
}

int agent_loop_new(struct agent_loop **out, cdn_err **err) {
    _cleanup_(agent_loop_freep) struct agent_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return cdn_err_set(err, ENOMEM, "out of memory");
    l->epfd = -1;
    l->sig.fd = -1;
    sigset_t mask;
    sigemptyset(&mask);
    for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++)
        sigaddset(&mask, handled_signals[i]);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return cdn_err_set(err, errno, "sigprocmask: %m");
    signal(SIGPIPE, SIG_IGN);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return cdn_err_set(err, errno, "epoll_create1: %m");
    l->sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (l->sig.fd < 0)
        return cdn_err_set(err, errno, "signalfd: %m");
    l->sig.dispatch = dispatch_signal;
    if (agent_loop_add(l, &l->sig, EPOLLIN) < 0)
        return cdn_err_set(err, errno, "epoll_ctl: %m");
    *out = TAKE_PTR(l);
    return 0;
}

void agent_loop_free(struct agent_loop *l) {
    if (!l)
        return;
    safe_close(l->sig.fd);
    safe_close(l->epfd);
    free(l);
}

void agent_loop_freep(struct agent_loop **l) {
    agent_loop_free(*l);
    *l = NULL;
}

int agent_loop_add(struct agent_loop *l, struct agent_source *src, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = src};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0 ? -errno : 0;
}

int agent_loop_mod(struct agent_loop *l, struct agent_source *src, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = src};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0 ? -errno : 0;
}

void agent_loop_del(struct agent_loop *l, struct agent_source *src) {
    if (src->fd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, src->fd, NULL);
}

void agent_loop_on_signal(struct agent_loop *l, agent_signal_fn fn, void *ud) {
    l->on_signal = fn;
    l->on_signal_ud = ud;
}

/* Sources may delete (and free) other sources while a batch of events is being dispatched, so
 * the batch is one event long: the next epoll_wait never returns a source already gone. */
int agent_loop_run(struct agent_loop *l) {
    while (!l->stopping) {
        struct epoll_event ev;
        int n = epoll_wait(l->epfd, &ev, 1, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 1) {
            struct agent_source *src = ev.data.ptr;
            src->dispatch(src, ev.events);
        }
    }
    return l->code;
}

void agent_loop_stop(struct agent_loop *l, int code) {
    l->stopping = true;
    l->code = code;
}

void agent_loop_reset_signals_in_child(void) {
    for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++)
        signal(handled_signals[i], SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}
