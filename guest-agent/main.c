/* SPDX-License-Identifier: Apache-2.0 */
/* cordon-agent: parses arguments, opens the transport, and wires the connection to the exec,
 * file and archive modules. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "archive_stream.h"
#include "cleanup.h"
#include "conn.h"
#include "exec.h"
#include "dir.h"
#include "file.h"
#include "loop.h"
#include "proxy.h"
#include "transport.h"

enum transport { T_NONE, T_FD, T_SERIAL, T_VSOCK };

#define RECONNECT_MS 100

struct agent {
    struct agent_loop *loop;
    struct agent_execs *execs;
    struct agent_conn *conn;
    struct agent_conn *dead; /* closed, freed from the loop (not inside its own callback) */
    struct agent_conn_opts opts;
    enum transport transport;
    const char *serial;
    struct agent_source listener; /* vsock */
    struct agent_source retry;    /* timerfd: reopen the serial port, free a dead conn */
    const char *proxy_listen;     /* --egress-proxy ADDRESS:PORT, or NULL */
    struct agent_proxy *proxy;
};

static void on_open(void *ud, struct agent_conn *c, uint64_t id, const cdn_envelope *env) {
    struct agent *a = ud;
    switch (env->body_case) {
    case CORDON_AGENT__ENVELOPE__BODY_EXEC: agent_exec_open(a->execs, c, id, env->exec); break;
    case CORDON_AGENT__ENVELOPE__BODY_FILE_READ: agent_file_read_open(c, id, env->file_read); break;
    case CORDON_AGENT__ENVELOPE__BODY_LIST_DIR: agent_dir_list(c, id, env->list_dir); break;
    case CORDON_AGENT__ENVELOPE__BODY_FILE_WRITE:
        agent_file_write_open(c, id, env->file_write);
        break;
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_PUT:
        agent_archive_put_open(c, id, env->archive_put);
        break;
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_GET:
        agent_archive_get_open(c, id, env->archive_get);
        break;
    case CORDON_AGENT__ENVELOPE__BODY_PORT_FORWARD:
        agent_proxy_forward(a->proxy, c, id, env->port_forward);
        break;
    default: break;
    }
}

static void on_shutdown(void *ud, bool kill_processes) {
    struct agent *a = ud;
    if (kill_processes)
        agent_execs_shutdown(a->execs, 2000);
    agent_loop_stop(a->loop, 0);
}

static void arm_retry(struct agent *a, unsigned ms) {
    /* An all-zero it_value would disarm the timer: "now" is 1 ns. */
    struct itimerspec its = {
        .it_value = {.tv_sec = ms / 1000, .tv_nsec = ms ? (long)(ms % 1000) * 1000000L : 1}};
    timerfd_settime(a->retry.fd, 0, &its, NULL);
}

static void on_closed(void *ud) {
    struct agent *a = ud;
    agent_proxy_set_conn(a->proxy, NULL);
    a->dead = a->conn;
    a->conn = NULL;
    if (a->transport == T_FD)
        agent_loop_stop(a->loop, 0);
    else
        arm_retry(a, a->transport == T_SERIAL ? RECONNECT_MS : 0);
}

static int start_conn(struct agent *a, int fd) {
    _cleanup_err_ cdn_err *err = NULL;
    struct agent_conn_handlers h = {
        .open = on_open, .shutdown = on_shutdown, .closed = on_closed, .ud = a};
    if (agent_conn_new(a->loop, fd, &a->opts, &h, &a->conn, &err) < 0) {
        fprintf(stderr, "cordon-agent: %s\n", cdn_err_msg(err));
        return -1;
    }
    agent_proxy_set_conn(a->proxy, a->conn);
    return 0;
}

static void on_retry(struct agent_source *src, uint32_t events) {
    (void)events;
    struct agent *a = (struct agent *)((char *)src - offsetof(struct agent, retry));
    uint64_t ticks;
    if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
        return;
    agent_conn_free(a->dead);
    a->dead = NULL;
    if (a->transport != T_SERIAL || a->conn)
        return;
    _cleanup_err_ cdn_err *err = NULL;
    int fd = agent_transport_open_serial(a->serial, &err);
    if (fd < 0 || start_conn(a, fd) < 0)
        arm_retry(a, RECONNECT_MS); /* the port may not exist yet, or the host is away */
}

static void on_listener(struct agent_source *src, uint32_t events) {
    (void)events;
    struct agent *a = (struct agent *)((char *)src - offsetof(struct agent, listener));
    _cleanup_err_ cdn_err *err = NULL;
    int fd = agent_transport_accept(src->fd, &err);
    if (fd < 0)
        return;
    if (a->conn) { /* one host at a time */
        close(fd);
        return;
    }
    start_conn(a, fd);
}

static void on_signal(void *ud, int signo) {
    struct agent *a = ud;
    if (signo == SIGCHLD) {
        agent_execs_reap(a->execs);
        return;
    }
    agent_execs_kill_all(a->execs);
    agent_loop_stop(a->loop, 128 + signo);
}

static void usage(FILE *f) {
    fputs("usage: cordon-agent (--vsock PORT | --serial PATH|NAME | --fd N)\n"
          "                    [--max-frame BYTES] [--window BYTES] [--max-streams N]\n"
          "                    [--egress-proxy ADDRESS:PORT] [--take-host-seed]\n"
          "The guest side of cordon's host<->guest channel (see proto/agent.proto). With\n"
          "--egress-proxy, an HTTP proxy there (and http_proxy & co. set for commands) sends\n"
          "the guest's connections to the host, which decides each by policy. With\n"
          "--take-host-seed (in a VM), each host's hello sets the clock and reseeds the RNG.\n",
          f);
}

static int parse_u32(const char *s, const char *what, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > UINT32_MAX) {
        fprintf(stderr, "cordon-agent: %s: '%s' is not a number\n", what, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_args(int argc, char **argv, struct agent *a, uint32_t *arg) {
    static const struct option opts[] = {{"vsock", required_argument, NULL, 'v'},
                                         {"serial", required_argument, NULL, 's'},
                                         {"fd", required_argument, NULL, 'f'},
                                         {"max-frame", required_argument, NULL, 'm'},
                                         {"window", required_argument, NULL, 'w'},
                                         {"max-streams", required_argument, NULL, 'n'},
                                         {"egress-proxy", required_argument, NULL, 'p'},
                                         {"take-host-seed", no_argument, NULL, 'T'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        int r = 0;
        switch (c) {
        case 'v':
            a->transport = T_VSOCK;
            r = parse_u32(optarg, "--vsock", arg);
            break;
        case 'f':
            a->transport = T_FD;
            r = parse_u32(optarg, "--fd", arg);
            break;
        case 's':
            a->transport = T_SERIAL;
            a->serial = optarg;
            break;
        case 'm': r = parse_u32(optarg, "--max-frame", &a->opts.max_frame_bytes); break;
        case 'w': r = parse_u32(optarg, "--window", &a->opts.stream_window); break;
        case 'n': r = parse_u32(optarg, "--max-streams", &a->opts.max_streams); break;
        case 'T': a->opts.take_host_seed = true; break;
        case 'p': a->proxy_listen = optarg; break;
        case 'V': printf("cordon-agent protocol %u\n", CDN_PROTOCOL_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (r < 0)
            return -1;
    }
    if (a->transport == T_NONE || optind != argc) {
        usage(stderr);
        return -1;
    }
    if (a->opts.max_frame_bytes < CDN_FRAME_MIN_MAX || a->opts.stream_window == 0 ||
        a->opts.max_streams == 0) {
        fprintf(stderr, "cordon-agent: --max-frame must be >= %u, --window and --max-streams > 0\n",
                CDN_FRAME_MIN_MAX);
        return -1;
    }
    return 0;
}

/* The proxy, and the variables that point the commands' programs at it (curl, pip, npm, git and
 * most HTTP libraries read one spelling or the other). */
static int start_proxy(struct agent *a) {
    _cleanup_err_ cdn_err *err = NULL;
    if (agent_proxy_new(a->loop, a->proxy_listen, &a->proxy, &err) < 0) {
        fprintf(stderr, "cordon-agent: %s\n", cdn_err_msg(err));
        return -1;
    }
    char url[96];
    snprintf(url, sizeof(url), "http://%s", a->proxy_listen);
    static const char *const vars[] = {"http_proxy",  "https_proxy", "all_proxy", "HTTP_PROXY",
                                       "HTTPS_PROXY", "ALL_PROXY",   NULL};
    for (const char *const *v = vars; *v; v++)
        setenv(*v, url, 1);
    setenv("no_proxy", "localhost,127.0.0.1,::1", 1);
    setenv("NO_PROXY", "localhost,127.0.0.1,::1", 1);
    return 0;
}

static int setup_transport(struct agent *a, uint32_t arg) {
    _cleanup_err_ cdn_err *err = NULL;
    int fd;
    switch (a->transport) {
    case T_FD:
        fd = agent_transport_adopt_fd((int)arg, &err);
        return fd < 0 ? fd : start_conn(a, fd);
    case T_SERIAL:
        arm_retry(a, 0); /* opened (and reopened) from the loop */
        return 0;
    case T_VSOCK:
        a->listener.fd = agent_transport_listen_vsock(arg, &err);
        if (a->listener.fd < 0)
            break;
        a->listener.dispatch = on_listener;
        return agent_loop_add(a->loop, &a->listener, EPOLLIN);
    default: return -EINVAL;
    }
    fprintf(stderr, "cordon-agent: %s\n", cdn_err_msg(err));
    return -1;
}

int main(int argc, char **argv) {
    struct agent a = {
        .opts = {.max_frame_bytes = CDN_FRAME_DEFAULT_MAX,
                 .stream_window = 4u << 20,
                 .max_streams = 1024},
        .listener.fd = -1,
        .retry.fd = -1,
    };
    uint32_t arg = 0;
    if (parse_args(argc, argv, &a, &arg) < 0)
        return 2;
    _cleanup_err_ cdn_err *err = NULL;
    if (agent_loop_new(&a.loop, &err) < 0 || agent_execs_new(&a.execs) < 0) {
        fprintf(stderr, "cordon-agent: %s\n", err ? cdn_err_msg(err) : "out of memory");
        return 1;
    }
    agent_loop_on_signal(a.loop, on_signal, &a);
    a.retry.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    a.retry.dispatch = on_retry;
    if (a.retry.fd < 0 || agent_loop_add(a.loop, &a.retry, EPOLLIN) < 0) {
        perror("cordon-agent: timerfd");
        return 1;
    }
    if (a.proxy_listen && start_proxy(&a) < 0)
        return 1;
    if (setup_transport(&a, arg) < 0)
        return 1;
    int code = agent_loop_run(a.loop);
    agent_execs_shutdown(a.execs, 2000);
    agent_conn_free(a.conn);
    agent_conn_free(a.dead);
    agent_execs_free(a.execs);
    agent_proxy_free(a.proxy);
    safe_close(a.listener.fd);
    safe_close(a.retry.fd);
    agent_loop_free(a.loop);
    return code < 0 ? 1 : code;
}
