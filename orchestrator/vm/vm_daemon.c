/* SPDX-License-Identifier: Apache-2.0 */
/* Local libvirt daemons for hosts without systemd: libvirtd needs virtlogd for a domain to start
 * ("Failed to connect socket to '/run/libvirt/virtlogd-sock'"), so both are started, virtlogd
 * first, and stopped by pid afterwards. Debian 12 ships the monolithic libvirtd. */
#include "vm_daemon.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "vm_run.h"
#include "clock.h"

#define LIBVIRTD_SOCK "/run/libvirt/libvirt-sock"
#define VIRTLOGD_SOCK "/run/libvirt/virtlogd-sock"

static bool answers(const char *path) {
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    return fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
}

/* Runs `prog -d -p PIDFILE`: it daemonises, so the child we wait for exits at once. */
static int spawn_daemon(const char *prog, const char *pidfile, cdn_err **err) {
    const char *argv[] = {prog, "-d", "-p", pidfile, NULL};
    int status = vm_run(argv, err);
    if (status < 0)
        return status;
    if (status != 0)
        return cdn_err_set(err, EIO, "%s did not start (exit status %d%s)", prog, status,
                           status == 127 ? ": not installed?" : "");
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
    if (answers(LIBVIRTD_SOCK) && answers(VIRTLOGD_SOCK))
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
    if (!answers(LIBVIRTD_SOCK)) {
        snprintf(pidfile, sizeof(pidfile), "%s/libvirtd.pid", dir);
        if ((r = spawn_daemon("libvirtd", pidfile, err)) < 0)
            return r;
        d->started_libvirtd = true;
        if ((r = wait_socket(LIBVIRTD_SOCK, deadline, "libvirtd", err)) < 0)
            return r;
    }
    return 0;
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
        usleep(20000);
    if (kill(pid, 0) == 0)
        kill(pid, SIGKILL);
    unlink(pidfile);
}

void vm_daemons_stop(struct vm_daemons *d) {
    /* libvirtd first: it holds virtlogd's socket while it runs. */
    if (d->started_libvirtd)
        stop_one(d->dir, "libvirtd");
    if (d->started_virtlogd)
        stop_one(d->dir, "virtlogd");
    d->started_libvirtd = d->started_virtlogd = false;
    free(d->dir);
    d->dir = NULL;
}
