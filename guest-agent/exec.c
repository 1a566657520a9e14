/* SPDX-License-Identifier: Apache-2.0 */
/* agent_exec: one Exec stream = one child in its own session and process group. Output is read
 * only while the host has granted credit, so a command printing without end blocks on its own
 * pipe instead of growing anyone's memory. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "exec_spawn.h"

#define PUMP_BUDGET_BYTES (1024u * 1024u)
#define STDIN_BUF_MAX (8u * 1024u * 1024u)

struct agent_exec;

struct exec_pipe {
    struct agent_source src;
    struct agent_exec *x;
    uint32_t fd_no;    /* 1 or 2, as reported to the host */
    uint64_t produced; /* bytes the command wrote, including dropped ones */
    bool open;
    bool armed; /* EPOLLIN registered */
};

struct agent_exec {
    struct agent_stream stream; /* first: the connection hands this pointer back */
    struct agent_execs *owner;
    struct agent_exec *next_live;
    pid_t pid;
    uint64_t started_ms;
    uint64_t output_limit;
    struct exec_pipe out[2];
    bool pty;
    /* stdin */
    struct agent_source in;
    struct cdn_buf in_buf;
    bool in_open;
    bool in_armed;
    bool in_close_pending;
    /* deadline */
    struct agent_source timer;
    /* outcome */
    bool exited;
    int status;
    struct rusage ru;
    bool timed_out;
    bool truncated;
};

struct agent_execs {
    struct agent_exec *live;
};

int agent_execs_new(struct agent_execs **out) {
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void agent_execs_free(struct agent_execs *x) { free(x); }

static struct agent_loop *loop_of(struct agent_exec *x) { return agent_conn_loop(x->stream.conn); }

static void unlink_live(struct agent_exec *x) {
    for (struct agent_exec **p = &x->owner->live; *p; p = &(*p)->next_live) {
        if (*p == x) {
            *p = x->next_live;
            return;
        }
    }
}

static void close_source(struct agent_exec *x, struct agent_source *src) {
    if (src->fd < 0)
        return;
    agent_loop_del(loop_of(x), src);
    src->fd = safe_close(src->fd);
}

static void close_pipe(struct exec_pipe *p) {
    close_source(p->x, &p->src);
    p->open = false;
    p->armed = false;
}

static void close_stdin(struct agent_exec *x) {
    close_source(x, &x->in);
    x->in_open = false;
    x->in_armed = false;
    /* Whatever was still queued is dropped; the host gets its credit back. */
    size_t dropped = cdn_buf_len(&x->in_buf);
    cdn_buf_free(&x->in_buf);
    if (dropped)
        agent_conn_consumed(x->stream.conn, &x->stream, dropped);
}

static void destroy(struct agent_stream *s) {
    struct agent_exec *x = (struct agent_exec *)s;
    if (!x->exited && x->pid > 0)
        kill(-x->pid, SIGKILL); /* reaped later by agent_execs_reap, unmatched */
    unlink_live(x);
    for (int i = 0; i < 2; i++)
        close_pipe(&x->out[i]);
    close_source(x, &x->in);
    cdn_buf_free(&x->in_buf);
    close_source(x, &x->timer);
    free(x);
}

static uint64_t tv_ms(struct timeval tv) {
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* Sends Exit once the command has exited and both output pipes are drained and closed. */
static void maybe_finish(struct agent_exec *x) {
    if (!x->exited || x->out[0].open || x->out[1].open)
        return;
    CordonAgent__Exit e = CORDON_AGENT__EXIT__INIT;
    if (WIFSIGNALED(x->status)) {
        e.signal = (uint32_t)WTERMSIG(x->status);
        e.exit_code = 128 + WTERMSIG(x->status);
    } else {
        e.exit_code = WEXITSTATUS(x->status);
    }
    e.timed_out = x->timed_out;
    e.output_truncated = x->truncated;
    e.user_ms = tv_ms(x->ru.ru_utime);
    e.sys_ms = tv_ms(x->ru.ru_stime);
    e.max_rss_kib = (uint64_t)x->ru.ru_maxrss;
    e.duration_ms = agent_now_ms() - x->started_ms;
    e.stdout_bytes = x->out[0].produced;
    e.stderr_bytes = x->out[1].produced;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EXIT;
    env.exit = &e;
    struct agent_conn *c = x->stream.conn;
    agent_conn_send(c, x->stream.id, &env);
    agent_conn_close_stream(c, &x->stream);
}

static void arm_pipe(struct exec_pipe *p, bool on) {
    if (!p->open || p->armed == on)
        return;
    p->armed = on;
    agent_loop_mod(loop_of(p->x), &p->src, on ? EPOLLIN : 0);
}

/* Output past the per-fd limit is read and dropped so the command never blocks on it. */
static ssize_t drain_dropped(struct exec_pipe *p) {
    uint8_t scratch[16384];
    ssize_t n = read(p->src.fd, scratch, sizeof(scratch));
    if (n > 0) {
        p->produced += (uint64_t)n;
        p->x->truncated = true;
    }
    return n;
}

/* Reads what the pipe has, as far as credit and output room allow. After the command has
 * exited, "nothing to read" means done: whatever it wrote is already in the pipe, and a
 * background child still holding the pipe open must not hold up the Exit. Never frees the exec:
 * callers follow with maybe_finish. */
static void pump_pipe(struct exec_pipe *p) {
    struct agent_exec *x = p->x;
    size_t budget = PUMP_BUDGET_BYTES;
    while (p->open && budget > 0) {
        ssize_t n;
        bool over = x->output_limit && p->produced >= x->output_limit;
        if (over) {
            n = drain_dropped(p);
        } else {
            size_t room = agent_conn_send_room(x->stream.conn, &x->stream);
            if (room == 0) {
                arm_pipe(p, false); /* woken by on_writable */
                return;
            }
            if (x->output_limit && room > x->output_limit - p->produced)
                room = (size_t)(x->output_limit - p->produced);
            struct cdn_frame_data_slot slot;
            uint8_t *buf =
                agent_conn_data_begin(x->stream.conn, &x->stream,
                                      CORDON_AGENT__ENVELOPE__BODY_OUTPUT, p->fd_no, room, &slot);
            if (!buf)
                return; /* out of memory: try again on the next event */
            n = read(p->src.fd, buf, room);
            if (n > 0) {
                agent_conn_data_end(x->stream.conn, &x->stream, &slot, (size_t)n, false);
                p->produced += (uint64_t)n;
            }
        }
        if (n > 0) {
            budget -= (size_t)n < budget ? (size_t)n : budget;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && !x->exited) {
            arm_pipe(p, true);
            return;
        }
        /* EOF, EIO (a pty whose last holder closed), EAGAIN after exit, or an error. */
        close_pipe(p);
    }
    if (p->open)
        arm_pipe(p, true); /* budget spent: come back through the loop */
}

static void on_pipe(struct agent_source *src, uint32_t events) {
    (void)events;
    struct exec_pipe *p = (struct exec_pipe *)src;
    pump_pipe(p);
    maybe_finish(p->x);
}

static void on_writable(struct agent_stream *s) {
    struct agent_exec *x = (struct agent_exec *)s;
    for (int i = 0; i < 2; i++)
        if (x->out[i].open)
            pump_pipe(&x->out[i]);
    maybe_finish(x);
}

static void flush_stdin(struct agent_exec *x) {
    while (x->in_open && cdn_buf_len(&x->in_buf) > 0) {
        ssize_t n = write(x->in.fd, cdn_buf_head(&x->in_buf), cdn_buf_len(&x->in_buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!x->in_armed) {
                x->in_armed = true;
                agent_loop_mod(loop_of(x), &x->in, EPOLLOUT);
            }
            return;
        }
        if (n < 0) { /* EPIPE: the command closed its stdin */
            close_stdin(x);
            return;
        }
        cdn_buf_consume(&x->in_buf, (size_t)n);
        agent_conn_consumed(x->stream.conn, &x->stream, (size_t)n);
    }
    if (x->in_open && x->in_armed) {
        x->in_armed = false;
        agent_loop_mod(loop_of(x), &x->in, 0);
    }
    if (x->in_open && x->in_close_pending)
        close_stdin(x);
}

static void on_stdin(struct agent_source *src, uint32_t events) {
    (void)events;
    struct agent_exec *x = (struct agent_exec *)((char *)src - offsetof(struct agent_exec, in));
    flush_stdin(x);
}

static void on_timer(struct agent_source *src, uint32_t events) {
    (void)events;
    struct agent_exec *x = (struct agent_exec *)((char *)src - offsetof(struct agent_exec, timer));
    close_source(x, &x->timer);
    if (!x->exited) {
        x->timed_out = true;
        kill(-x->pid, SIGKILL); /* the whole group: a grandchild must not outlive the timeout */
    }
}

static void on_frame(struct agent_stream *s, const cdn_envelope *env) {
    struct agent_exec *x = (struct agent_exec *)s;
    struct agent_conn *c = s->conn;
    switch (env->body_case) {
    case CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA: {
        size_t n = env->stdin_data->data.len;
        if (!x->in_open || x->in_close_pending) {
            agent_conn_consumed(c, s, n); /* stdin is gone: drop, but return the credit */
            return;
        }
        if (cdn_buf_len(&x->in_buf) + n > STDIN_BUF_MAX ||
            cdn_buf_append(&x->in_buf, env->stdin_data->data.data, n) < 0) {
            agent_conn_send_error(c, s->id, CORDON_AGENT__ERROR_CODE__ERROR_CREDIT,
                                  "stdin buffer full");
            return;
        }
        flush_stdin(x);
        return;
    }
    case CORDON_AGENT__ENVELOPE__BODY_STDIN_CLOSE:
        x->in_close_pending = true;
        flush_stdin(x);
        return;
    case CORDON_AGENT__ENVELOPE__BODY_SIGNAL: {
        uint32_t sig = env->signal->signal;
        if (sig == 0 || sig >= (uint32_t)NSIG) {
            agent_conn_send_error(c, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                                  "signal %u is not a valid signal", sig);
            return;
        }
        if (!x->exited)
            kill(-x->pid, (int)sig);
        return;
    }
    default:
        agent_conn_send_error(c, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "%s is not valid on an exec stream",
                              cdn_frame_body_name(env->body_case));
    }
}

static const struct agent_stream_ops exec_ops = {
    .on_frame = on_frame, .on_writable = on_writable, .destroy = destroy};

/* Matches exited children to their streams. Children of streams already closed, and orphans
 * reparented to us when we run as PID 1, are reaped and forgotten. */
void agent_execs_reap(struct agent_execs *xs) {
    for (;;) {
        int status;
        struct rusage ru;
        pid_t pid = wait4(-1, &status, WNOHANG, &ru);
        if (pid <= 0)
            return;
        struct agent_exec *x = xs->live;
        while (x && x->pid != pid)
            x = x->next_live;
        if (!x)
            continue;
        x->exited = true;
        x->status = status;
        x->ru = ru;
        unlink_live(x);
        close_source(x, &x->timer);
        if (x->in_open)
            close_stdin(x);
        for (int i = 0; i < 2; i++)
            if (x->out[i].open)
                pump_pipe(&x->out[i]);
        maybe_finish(x);
    }
}

void agent_execs_kill_all(struct agent_execs *xs) {
    for (struct agent_exec *x = xs->live; x; x = x->next_live)
        if (!x->exited)
            kill(-x->pid, SIGKILL);
}

/* Called when the agent is about to stop: no event loop turns after this, so reap here with a
 * bounded wait instead of through SIGCHLD. */
void agent_execs_shutdown(struct agent_execs *xs, int timeout_ms) {
    agent_execs_kill_all(xs);
    uint64_t end = agent_now_ms() + (uint64_t)timeout_ms;
    while (xs->live && agent_now_ms() < end) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0)
            break; /* no children left */
        if (pid == 0) {
            usleep(2000);
            continue;
        }
        for (struct agent_exec *x = xs->live; x; x = x->next_live) {
            if (x->pid == pid) {
                x->exited = true;
                unlink_live(x);
                break;
            }
        }
    }
}

void agent_exec_open(struct agent_execs *xs, struct agent_conn *c, uint64_t id,
                     const CordonAgent__Exec *req) {
    struct agent_exec *x = calloc(1, sizeof(*x));
    if (!x) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    x->owner = xs;
    x->out[0] = (struct exec_pipe){.src.fd = -1, .x = x, .fd_no = 1};
    x->out[1] = (struct exec_pipe){.src.fd = -1, .x = x, .fd_no = 2};
    x->in.fd = x->timer.fd = -1;
    x->output_limit = req->output_limit;
    x->pty = req->pty;
    struct exec_spawned sp;
    _cleanup_err_ cdn_err *err = NULL;
    int r = exec_spawn(req, &sp, &err);
    if (r < 0) {
        agent_conn_send_error(c, id,
                              r == -ENOENT || r == -EACCES || r == -ENOTDIR
                                  ? CORDON_AGENT__ERROR_CODE__ERROR_NOT_FOUND
                                  : CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "%s", cdn_err_msg(err));
        free(x);
        return;
    }
    x->pid = sp.pid;
    x->started_ms = agent_now_ms();
    agent_conn_add_stream(c, &x->stream, id, &exec_ops);
    x->next_live = xs->live;
    xs->live = x;
    struct agent_loop *loop = agent_conn_loop(c);
    for (int i = 0; i < 2; i++) {
        if (sp.out_fd[i] < 0)
            continue;
        x->out[i].src.fd = sp.out_fd[i];
        x->out[i].src.dispatch = on_pipe;
        x->out[i].open = x->out[i].armed = true;
        agent_loop_add(loop, &x->out[i].src, EPOLLIN);
    }
    if (sp.in_fd >= 0) {
        x->in.fd = sp.in_fd;
        x->in.dispatch = on_stdin;
        x->in_open = true;
        agent_loop_add(loop, &x->in, 0);
    }
    if (req->timeout_ms > 0) {
        /* Created after the spawn so the child never inherits it; if it cannot exist, the
         * command must not run without its deadline. */
        x->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct itimerspec its = {
            .it_value = {.tv_sec = req->timeout_ms / 1000,
                         .tv_nsec = (long)(req->timeout_ms % 1000) * 1000000L}};
        x->timer.dispatch = on_timer;
        if (x->timer.fd < 0 || timerfd_settime(x->timer.fd, 0, &its, NULL) < 0 ||
            agent_loop_add(loop, &x->timer, EPOLLIN) < 0) {
            agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL,
                                  "cannot arm the %u ms timeout: %s", req->timeout_ms,
                                  strerror(errno));
            agent_conn_close_stream(c, &x->stream);
            return;
        }
    }
    CordonAgent__Started st = CORDON_AGENT__STARTED__INIT;
    st.pid = (uint32_t)sp.pid;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_STARTED;
    env.started = &st;
    agent_conn_send(c, id, &env);
}
