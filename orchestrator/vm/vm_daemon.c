/* SPDX-License-Identifier: Apache-2.0 */
/* Local libvirt daemons for hosts without systemd. The QEMU driver needs virtlogd for a domain to
 * start ("Failed to connect socket to '/run/libvirt/virtlogd-sock'"), so virtlogd is started
 * first, then the QEMU driver's daemon: the monolithic libvirtd (Debian 12), or virtqemud where a
 * host has only the modular daemons. Both are stopped by pid afterwards.
 *
 * The daemons run under a small supervisor process that is a child subreaper: libvirt daemonises
 * each QEMU it starts, and an orphan is reaped by the nearest subreaper, else by PID 1. libvirt's
 * destroy returns only once QEMU's pid is gone, so on a host whose PID 1 reaps late (measured: ~2
 * s on these machines) every teardown would pay that delay; the supervisor reaps at once. */
#include "vm_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"

#define VIRTLOGD_SOCK "/run/libvirt/virtlogd-sock"

/* The QEMU driver's daemons, in order of preference, with the socket qemu:///system reaches. */
static const struct {
    const char *prog, *sock;
} drivers[] = {
    {"libvirtd", "/run/libvirt/libvirt-sock"},
    {"virtqemud", "/run/libvirt/virtqemud-sock"},
};

static bool answers(const char *path) {
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    return fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
}

static bool driver_answers(void) {
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        if (answers(drivers[i].sock))
            return true;
    return false;
}

static bool in_path(const char *prog) {
    const char *path = getenv("PATH");
    _cleanup_free_ char *copy = strdup(path && *path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
    if (!copy)
        return false;
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char full[4200];
        snprintf(full, sizeof(full), "%s/%s", d, prog);
        if (access(full, X_OK) == 0)
            return true;
    }
    return false;
}

/* The supervisor: starts `prog -d -p PIDFILE`, reports its exit status on `report`, then reaps
 * every orphan that reaches it until it has no child left (the daemon and its QEMUs gone). */
static _Noreturn void supervise(const char *prog, const char *pidfile, int report) {
    /* Nothing of the caller's may stay open for the daemons' lifetime (a pipe someone reads to
     * its end, a socket): this process never execs, so close-on-exec does not help. */
    if (dup2(report, 3) < 0)
        _exit(1);
    report = 3;
    close_range(4, ~0U, 0);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    prctl(PR_SET_NAME, "cordon-reaper");
    setsid();
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_IGN); /* a Ctrl-C meant for cordon must not take the daemons with it */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        execlp(prog, prog, "-d", "-p", pidfile, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    unsigned char code = 126;
    if (pid > 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        code = WIFEXITED(status) ? (unsigned char)WEXITSTATUS(status) : 126;
    }
    ssize_t w = write(report, &code, 1);
    (void)w;
    close(report);
    for (;;)
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
            _exit(0);
}

/* Starts prog daemonised under a fresh supervisor (detached: a grandchild of ours, so nobody
 * has to wait for it). Returns once prog's foreground part exited, with its status checked. */
static int spawn_daemon(const char *prog, const char *pidfile, cdn_err **err) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return cdn_err_set(err, errno, "pipe: %m");
    _cleanup_close_ int rd = p[0];
    pid_t mid = fork();
    if (mid < 0) {
        close(p[1]);
        return cdn_err_set(err, errno, "fork: %m");
    }
    if (mid == 0) {
        close(p[0]);
        pid_t sup = fork();
        if (sup == 0)
            supervise(prog, pidfile, p[1]);
        _exit(sup < 0 ? 1 : 0);
    }
    close(p[1]);
    int status;
    while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
        ;
    unsigned char code = 0;
    ssize_t n;
    while ((n = read(rd, &code, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1)
        return cdn_err_set(err, EIO, "%s: its supervisor did not start", prog);
    if (code != 0)
        return cdn_err_set(err, EIO, "%s did not start (exit status %d%s)", prog, code,
                           code == 127 ? ": not installed?" : "");
    return 0;
}

static int wait_socket(const char *path, uint64_t deadline, const char *what, cdn_err **err) {
    while (!answers(path)) {
        if (cdn_now_ms() >= deadline)
            return cdn_err_set(err, ETIMEDOUT, "%s did not open %s in time", what, path);
        usleep(20000);
    }
    return 0;
}

int vm_daemons_ensure(struct vm_daemons *d, const char *dir, int timeout_ms, cdn_err **err) {
    uint64_t deadline = cdn_now_ms() + (uint64_t)timeout_ms;
    if (driver_answers() && answers(VIRTLOGD_SOCK))
        return 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", dir);
    d->dir = strdup(dir);
    if (!d->dir)
        return cdn_err_set(err, ENOMEM, "out of memory");
    char pidfile[4200];
    int r;
    if (!answers(VIRTLOGD_SOCK)) {
        snprintf(pidfile, sizeof(pidfile), "%s/virtlogd.pid", dir);
        if ((r = spawn_daemon("virtlogd", pidfile, err)) < 0)
            return r;
        d->started_virtlogd = true;
        if ((r = wait_socket(VIRTLOGD_SOCK, deadline, "virtlogd", err)) < 0)
            return r;
    }
    if (driver_answers())
        return 0;
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        if (!in_path(drivers[i].prog))
            continue;
        snprintf(pidfile, sizeof(pidfile), "%s/%s.pid", dir, drivers[i].prog);
        if ((r = spawn_daemon(drivers[i].prog, pidfile, err)) < 0)
            return r;
        d->driver = drivers[i].prog;
        return wait_socket(drivers[i].sock, deadline, drivers[i].prog, err);
    }
    return cdn_err_set(err, ENOENT,
                       "no libvirt daemon answers and neither libvirtd nor virtqemud is "
                       "installed (run `make deps`)");
}

static void stop_one(const char *dir, const char *name) {
    char pidfile[4200], buf[32] = "";
    snprintf(pidfile, sizeof(pidfile), "%s/%s.pid", dir, name);
    _cleanup_close_ int fd = open(pidfile, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
        return;
    pid_t pid = (pid_t)atoi(buf);
    if (pid <= 1 || kill(pid, SIGTERM) < 0)
        return;
    uint64_t deadline = cdn_now_ms() + 10000;
    while (kill(pid, 0) == 0 && cdn_now_ms() < deadline)
        usleep(10000);
    if (kill(pid, 0) == 0)
        kill(pid, SIGKILL);
    unlink(pidfile);
}

void vm_daemons_stop(struct vm_daemons *d) {
    /* The QEMU driver first: it holds virtlogd's socket while it runs. */
    if (d->driver)
        stop_one(d->dir, d->driver);
    if (d->started_virtlogd)
        stop_one(d->dir, "virtlogd");
    d->driver = NULL;
    d->started_virtlogd = false;
    free(d->dir);
    d->dir = NULL;
}
