/* SPDX-License-Identifier: Apache-2.0 */
/* exec_spawn: builds argv/env/rlimits in the parent, forks, and in the child sets up the session,
 * stdio and limits before exec. The child reports a failed step through a CLOEXEC pipe, so the
 * parent knows "started" from "could not start" before it answers the host. */
#include "exec_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "loop.h"

#define MAX_ARGS 4096u
#define MAX_ENV 4096u
#define MAX_RLIMITS 16u
#define MAX_GROUPS 64u

extern char **environ;

enum stage { ST_STDIO = 1, ST_SESSION, ST_RLIMIT, ST_USER, ST_CWD, ST_EXEC };

struct child_report {
    int stage;
    int error;
};

struct spawn_fds {
    int status[2];
    int out[2], errp[2], in[2];
    int pty_master, pty_slave;
};

static void spawn_fds_close(struct spawn_fds *f) {
    int *all[] = {&f->status[0], &f->status[1], &f->out[0], &f->out[1],     &f->errp[0],
                  &f->errp[1],   &f->in[0],     &f->in[1],  &f->pty_master, &f->pty_slave};
    for (size_t i = 0; i < ELEMENTSOF(all); i++)
        *all[i] = safe_close(*all[i]);
}

static void strv_free(char **v) {
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free)

/* Base environment (unless cleared) with req's KEY=VALUE entries replacing same-named ones. */
static int build_env(const CordonAgent__Exec *req, char ***out, cdn_err **err) {
    if (req->n_env > MAX_ENV)
        return cdn_err_set(err, E2BIG, "exec: %zu environment entries (limit %u)", req->n_env,
                           MAX_ENV);
    size_t base = 0;
    if (!req->clear_env)
        while (environ[base])
            base++;
    _cleanup_(strv_freep) char **env = calloc(base + req->n_env + 1, sizeof(char *));
    if (!env)
        return cdn_err_set(err, ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < base; i++)
        if (!(env[n++] = strdup(environ[i])))
            return cdn_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < req->n_env; i++) {
        const char *kv = req->env[i], *eq = strchr(kv, '=');
        if (!eq || eq == kv)
            return cdn_err_set(err, EINVAL, "exec: environment entry %zu is not KEY=VALUE", i);
        size_t klen = (size_t)(eq - kv) + 1, j = 0;
        while (j < n && strncmp(env[j], kv, klen) != 0)
            j++;
        char *copy = strdup(kv);
        if (!copy)
            return cdn_err_set(err, ENOMEM, "out of memory");
        if (j < n)
            free(env[j]);
        else
            n++;
        env[j] = copy;
    }
    *out = TAKE_PTR(env);
    return 0;
}

static const int rlimit_map[] = {
    [CORDON_AGENT__RLIMIT__RLIMIT_CPU_SECONDS] = RLIMIT_CPU,
    [CORDON_AGENT__RLIMIT__RLIMIT_FILE_BYTES] = RLIMIT_FSIZE,
    [CORDON_AGENT__RLIMIT__RLIMIT_ADDRESS_SPACE_BYTES] = RLIMIT_AS,
    [CORDON_AGENT__RLIMIT__RLIMIT_OPEN_FILES] = RLIMIT_NOFILE,
    [CORDON_AGENT__RLIMIT__RLIMIT_PROCESSES] = RLIMIT_NPROC,
    [CORDON_AGENT__RLIMIT__RLIMIT_CORE_BYTES] = RLIMIT_CORE,
    [CORDON_AGENT__RLIMIT__RLIMIT_STACK_BYTES] = RLIMIT_STACK,
};

struct rl {
    int resource;
    struct rlimit lim;
};

static int build_rlimits(const CordonAgent__Exec *req, struct rl *out, cdn_err **err) {
    if (req->n_rlimits > MAX_RLIMITS)
        return cdn_err_set(err, E2BIG, "exec: %zu rlimits (limit %u)", req->n_rlimits, MAX_RLIMITS);
    for (size_t i = 0; i < req->n_rlimits; i++) {
        const CordonAgent__ResourceLimit *r = req->rlimits[i];
        unsigned kind = (unsigned)r->resource;
        if (kind == 0 || kind >= ELEMENTSOF(rlimit_map))
            return cdn_err_set(err, EINVAL, "exec: rlimit %zu has unknown resource %u", i, kind);
        if (r->soft > r->hard)
            return cdn_err_set(err, EINVAL, "exec: rlimit %zu: soft %llu above hard %llu", i,
                               (unsigned long long)r->soft, (unsigned long long)r->hard);
        out[i].resource = rlimit_map[kind];
        out[i].lim.rlim_cur = r->soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t)r->soft;
        out[i].lim.rlim_max = r->hard == UINT64_MAX ? RLIM_INFINITY : (rlim_t)r->hard;
    }
    return 0;
}

static int open_pty(const CordonAgent__Exec *req, struct spawn_fds *f, cdn_err **err) {
    char name[128];
    f->pty_master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (f->pty_master < 0)
        return cdn_err_set(err, errno, "exec: posix_openpt: %m");
    if (grantpt(f->pty_master) < 0 || unlockpt(f->pty_master) < 0 ||
        ptsname_r(f->pty_master, name, sizeof(name)) != 0)
        return cdn_err_set(err, errno, "exec: pty setup: %m");
    f->pty_slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (f->pty_slave < 0)
        return cdn_err_set(err, errno, "exec: open %s: %m", name);
    struct winsize ws = {.ws_row = (unsigned short)(req->pty_rows ? req->pty_rows : 24),
                         .ws_col = (unsigned short)(req->pty_cols ? req->pty_cols : 80)};
    ioctl(f->pty_master, TIOCSWINSZ, &ws);
    return 0;
}

static int open_stdio(const CordonAgent__Exec *req, struct spawn_fds *f, cdn_err **err) {
    if (pipe2(f->status, O_CLOEXEC) < 0)
        return cdn_err_set(err, errno, "exec: pipe: %m");
    if (req->stdin == CORDON_AGENT__STDIN_MODE__STDIN_PIPE && pipe2(f->in, O_CLOEXEC) < 0)
        return cdn_err_set(err, errno, "exec: pipe: %m");
    if (req->pty)
        return open_pty(req, f, err);
    if (pipe2(f->out, O_CLOEXEC) < 0 || pipe2(f->errp, O_CLOEXEC) < 0)
        return cdn_err_set(err, errno, "exec: pipe: %m");
    return 0;
}

__attribute__((noreturn)) static void child_fail(int status_fd, int stage) {
    struct child_report rep = {stage, errno};
    ssize_t n = write(status_fd, &rep, sizeof(rep));
    (void)n;
    _exit(127);
}

/* In the child, between fork and exec. Everything the parent opened is O_CLOEXEC, and dup2
 * clears that flag on 0, 1 and 2 only. */
__attribute__((noreturn)) static void child(const CordonAgent__Exec *req, struct spawn_fds *f,
                                            char **envp, const struct rl *rls) {
    int st = f->status[1];
    agent_loop_reset_signals_in_child();
    if (setsid() < 0)
        child_fail(st, ST_SESSION);
    int in = f->in[0];
    if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        child_fail(st, ST_STDIO);
    int out = f->pty_slave >= 0 ? f->pty_slave : f->out[1];
    int errfd = f->pty_slave >= 0 ? f->pty_slave : f->errp[1];
    if (f->pty_slave >= 0 && ioctl(f->pty_slave, TIOCSCTTY, 0) < 0)
        child_fail(st, ST_SESSION);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
        child_fail(st, ST_STDIO);
    for (size_t i = 0; i < req->n_rlimits; i++)
        if (setrlimit(rls[i].resource, &rls[i].lim) < 0)
            child_fail(st, ST_RLIMIT);
    /* Groups before the gid, the gid before the uid: each step needs the privilege the next one
     * drops. The cwd is entered as the user, so its permissions apply. */
    const CordonAgent__Credentials *u = req->user;
    if (u && (setgroups(u->n_groups, (const gid_t *)u->groups) < 0 || setgid(u->gid) < 0 ||
              setuid(u->uid) < 0))
        child_fail(st, ST_USER);
    if (req->cwd && req->cwd[0] && chdir(req->cwd) < 0)
        child_fail(st, ST_CWD);
    environ = envp;
    execvp(req->argv[0], req->argv);
    child_fail(st, ST_EXEC);
}

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static int report_failure(const CordonAgent__Exec *req, const struct child_report *rep,
                          cdn_err **err) {
    switch (rep->stage) {
    case ST_EXEC:
        return cdn_err_set(err, rep->error, "exec '%s': %s", req->argv[0], strerror(rep->error));
    case ST_CWD:
        return cdn_err_set(err, rep->error, "exec: cwd '%s': %s", req->cwd, strerror(rep->error));
    case ST_RLIMIT:
        return cdn_err_set(err, rep->error, "exec: setrlimit: %s", strerror(rep->error));
    case ST_USER:
        return cdn_err_set(err, rep->error, "exec: switching to uid %u gid %u: %s", req->user->uid,
                           req->user->gid, strerror(rep->error));
    default:
        return cdn_err_set(err, rep->error, "exec: setting up the child: %s", strerror(rep->error));
    }
}

/* The child started: keep our ends (non-blocking) and close everything else. */
static void hand_over(struct spawn_fds *f, pid_t pid, struct exec_spawned *out) {
    *out = (struct exec_spawned){.pid = pid, .out_fd = {-1, -1}, .in_fd = -1};
    if (f->pty_master >= 0) {
        out->out_fd[0] = TAKE_FD(f->pty_master);
        if (f->in[1] >= 0) { /* with a pty, stdin data goes to the terminal */
            f->in[1] = safe_close(f->in[1]);
            out->in_fd = fcntl(out->out_fd[0], F_DUPFD_CLOEXEC, 3);
        }
    } else {
        out->out_fd[0] = TAKE_FD(f->out[0]);
        out->out_fd[1] = TAKE_FD(f->errp[0]);
        out->in_fd = TAKE_FD(f->in[1]);
    }
    spawn_fds_close(f);
    for (int i = 0; i < 2; i++)
        if (out->out_fd[i] >= 0)
            set_nonblock(out->out_fd[i]);
    if (out->in_fd >= 0)
        set_nonblock(out->in_fd);
}

int exec_spawn(const CordonAgent__Exec *req, struct exec_spawned *out, cdn_err **err) {
    if (req->n_argv == 0 || !req->argv[0][0])
        return cdn_err_set(err, EINVAL, "exec: argv is empty");
    if (req->n_argv > MAX_ARGS)
        return cdn_err_set(err, E2BIG, "exec: %zu arguments (limit %u)", req->n_argv, MAX_ARGS);
    if (req->user && req->user->n_groups > MAX_GROUPS)
        return cdn_err_set(err, E2BIG, "exec: %zu supplementary groups (limit %u)",
                           req->user->n_groups, MAX_GROUPS);
    struct rl rls[MAX_RLIMITS];
    int r = build_rlimits(req, rls, err);
    if (r < 0)
        return r;
    _cleanup_(strv_freep) char **envp = NULL;
    r = build_env(req, &envp, err);
    if (r < 0)
        return r;
    struct spawn_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, -1, -1};
    r = open_stdio(req, &f, err);
    if (r < 0) {
        spawn_fds_close(&f);
        return r;
    }
    /* protobuf-c NUL-terminates nothing for repeated strings' array: argv needs its NULL. */
    _cleanup_free_ char **argv = calloc(req->n_argv + 1, sizeof(char *));
    if (!argv) {
        spawn_fds_close(&f);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    memcpy(argv, req->argv, req->n_argv * sizeof(char *));
    CordonAgent__Exec copy = *req;
    copy.argv = argv;
    pid_t pid = fork();
    if (pid < 0) {
        spawn_fds_close(&f);
        return cdn_err_set(err, errno, "exec: fork: %m");
    }
    if (pid == 0)
        child(&copy, &f, envp, rls);
    f.status[1] = safe_close(f.status[1]);
    struct child_report rep;
    ssize_t n;
    do
        n = read(f.status[0], &rep, sizeof(rep));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(rep)) { /* the child could not start: it has _exit'ed */
        waitpid(pid, NULL, 0);
        spawn_fds_close(&f);
        return report_failure(req, &rep, err);
    }
    hand_over(&f, pid, out);
    return 0;
}
