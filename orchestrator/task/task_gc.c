/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task_gc: the owner mark and the sweep for dead tasks. */
#include "task_gc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "evidence.h"
#include "fsutil.h"
#include "vm.h"

/* Field 22 of /proc/PID/stat, the start time in clock ticks since boot: 0 if the process is gone.
 */
static unsigned long long start_time(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    unsigned long long t = 0;
    if (!p || sscanf(p + 1,
                     " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                     "%*d %*d %llu",
                     &t) != 1)
        return 0;
    return t;
}

int cdn_task_owner_write(const char *task_dir, cdn_err **err) {
    char path[4200], line[64];
    snprintf(path, sizeof(path), "%s/owner", task_dir);
    int n = snprintf(line, sizeof(line), "%d %llu\n", (int)getpid(), start_time(getpid()));
    /* Written aside and renamed in: a sweep running meanwhile (another sandbox's boot) never
     * reads a mark that is still empty, and takes the folder for a dead task's. */
    return cdn_write_atomic(path, line, (size_t)n, err);
}

void cdn_task_owner_clear(const char *task_dir) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/owner", task_dir);
    unlink(path);
    rmdir(task_dir); /* only if nothing is left: a task that failed before its VM existed */
}

/* True if the folder has an owner mark and the process it names is gone. */
static bool owner_dead(int dirfd) {
    _cleanup_close_ int fd = openat(dirfd, "owner", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return true; /* a mark cut short by the crash */
    buf[n] = '\0';
    int pid = 0;
    unsigned long long t = 0;
    if (sscanf(buf, "%d %llu", &pid, &t) != 2 || pid <= 0)
        return true;
    return start_time((pid_t)pid) != t;
}

static bool unlink_at(int dirfd, const char *name, unsigned *count) {
    if (unlinkat(dirfd, name, 0) == 0) {
        (*count)++;
        return true;
    }
    return false;
}

static bool valid_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* The domain of a dead task or probe, cordon-<id>, if it still runs. */
static int destroy_domain(struct cdn_vm_host *h, const char *id, struct cdn_task_gc_report *rep,
                          cdn_err **err) {
    char name[80];
    snprintf(name, sizeof(name), "cordon-%.64s", id);
    int r = h ? cdn_vm_host_destroy(h, name, err) : 0;
    if (r > 0)
        rep->domains++;
    return r;
}

/* The folder e of d, open, if it is one of ours (a plain id) and its owner is dead; else -1. */
static int dead_folder(DIR *d, const struct dirent *e) {
    if (!valid_id(e->d_name))
        return -1;
    int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && !owner_dead(fd)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int sweep_tasks(const char *tasks, struct cdn_vm_host *h, struct cdn_task_gc_report *rep,
                       cdn_err **err) {
    _cleanup_(closedirp) DIR *d = opendir(tasks);
    if (!d)
        return errno == ENOENT ? 0 : cdn_err_set(err, errno, "opening %s: %m", tasks);
    for (struct dirent *e; (e = readdir(d));) {
        _cleanup_close_ int fd = dead_folder(d, e);
        if (fd < 0)
            continue;
        int r = destroy_domain(h, e->d_name, rep, err);
        if (r < 0)
            return r;
        /* A warm pool's clone runs as its template's domain (libvirt restores a saved guest
         * under its own name), and libvirt does not destroy a restored guest with the
         * connection: the folder names it. */
        char tpl[80] = "";
        _cleanup_close_ int cf = openat(fd, "clone-of", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        ssize_t n = cf >= 0 ? read(cf, tpl, sizeof(tpl) - 1) : -1;
        tpl[n > 0 ? n : 0] = '\0';
        if (valid_id(tpl) && (r = destroy_domain(h, tpl, rep, err)) < 0)
            return r;
        unlinkat(fd, "clone-of", 0);
        unlink_at(fd, "agent.sock", &rep->files);
        unlink_at(fd, "disk.qcow2", &rep->files);
        unlink_at(fd, "memory.save", &rep->files); /* a session paused on disk */
        unlinkat(fd, "owner", 0);
        rep->tasks++;
        /* A folder with nothing left (the task died before its console existed) goes too. */
        unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
    }
    return 0;
}

/* probe/probe-<pid>: a KVM probe's folder; its domain is cordon-probe-<pid>. */
static int sweep_probes(const char *probes, struct cdn_vm_host *h, struct cdn_task_gc_report *rep,
                        cdn_err **err) {
    _cleanup_(closedirp) DIR *d = opendir(probes);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        int pid = 0;
        char tail;
        if (sscanf(e->d_name, "probe-%d%c", &pid, &tail) != 1 || pid <= 0 ||
            start_time((pid_t)pid) != 0)
            continue;
        int r = destroy_domain(h, e->d_name, rep, err);
        if (r < 0)
            return r;
        _cleanup_close_ int fd =
            openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            unlink_at(fd, "agent.sock", &rep->files);
            unlink_at(fd, "console.log", &rep->files);
        }
        unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
    }
    return 0;
}

/* runs/XXXXXX: the private store and address of a `cordon run`'s own daemon (and its socket,
 * in /tmp when the state folder's path is too long for one). */
static void sweep_runs(const char *runs, struct cdn_task_gc_report *rep) {
    _cleanup_(closedirp) DIR *d = opendir(runs);
    for (struct dirent *e; d && (e = readdir(d));) {
        _cleanup_close_ int fd = dead_folder(d, e);
        if (fd < 0)
            continue;
        char addr[4200] = "";
        _cleanup_close_ int afd = openat(fd, "addr", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t n = afd >= 0 ? read(afd, addr, sizeof(addr) - 1) : -1;
        addr[n > 0 ? n : 0] = '\0';
        addr[strcspn(addr, "\n")] = '\0';
        const char *tmp = "unix:/tmp/cordon-run-";
        if (strncmp(addr, tmp, strlen(tmp)) == 0 && !strstr(addr, "..")) {
            char *sock = addr + strlen("unix:");
            if (unlink(sock) == 0)
                rep->files++;
            char *slash = strrchr(sock, '/');
            *slash = '\0';
            rmdir(sock);
        }
        static const char *const files[] = {"addr", "cordond.sock", "cordond.db", "cordond.db-wal",
                                            "cordond.db-shm"};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
            unlink_at(fd, files[i], &rep->files);
        unlinkat(fd, "owner", 0);
        if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0)
            rep->runs++;
    }
}

int cdn_task_gc(const char *state_dir, struct cdn_vm_host *h, struct cdn_task_gc_report *rep,
                cdn_err **err) {
    *rep = (struct cdn_task_gc_report){0};
    char path[4200];
    snprintf(path, sizeof(path), "%s/tasks", state_dir);
    int r = sweep_tasks(path, h, rep, err);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "%s/runs", state_dir);
    sweep_runs(path, rep);
    snprintf(path, sizeof(path), "%s/probe", state_dir);
    return sweep_probes(path, h, rep, err);
}

/* ---- retention ---- */

/* A finished task's folder (torn down: no owner mark; or its owner dead) against the retention
 * its manifest records, aged from the manifest's last write (its seal, or a review's). */
static void retain_one(int tasks_fd, const char *tasks, const char *id, int64_t now_s,
                       struct cdn_task_retention_report *rep) {
    _cleanup_close_ int fd = openat(tasks_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || (faccessat(fd, "owner", F_OK, 0) == 0 && !owner_dead(fd)))
        return; /* a live task's */
    char path[4800];
    snprintf(path, sizeof(path), "%s/%s/evidence/manifest.json", tasks, id);
    struct stat st;
    json_error_t je;
    if (stat(path, &st) < 0)
        return;
    json_t *m = json_load_file(path, 0, &je);
    json_int_t ev_days = json_integer_value(json_object_get(m, "retention_evidence_days"));
    json_t *ws = json_object_get(m, "retention_workspace_days");
    bool has_ws = json_is_integer(ws);
    json_int_t ws_days = json_integer_value(ws);
    const char *review = json_string_value(json_object_get(m, "review"));
    bool awaiting = review && strcmp(review, "awaiting") == 0;
    json_decref(m);
    int64_t age_days = (now_s - (int64_t)st.st_mtime) / 86400;
    if (ev_days > 0 && age_days >= ev_days && !awaiting) {
        snprintf(path, sizeof(path), "%s/%s", tasks, id);
        cdn_rmtree(path);
        char **ids = realloc(rep->removed, (rep->n_removed + 1) * sizeof(char *));
        if (ids) {
            rep->removed = ids;
            if ((ids[rep->n_removed] = strdup(id)))
                rep->n_removed++;
        }
        rep->folders++;
        return;
    }
    /* The worktree (and the task branch in it) goes first; a result awaiting review keeps it. */
    if (has_ws && age_days >= ws_days && !awaiting &&
        faccessat(fd, "workspace", F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        snprintf(path, sizeof(path), "%s/%s/workspace", tasks, id);
        cdn_rmtree(path);
        rep->workspaces++;
    }
}

int cdn_task_retention(const char *state_dir, int64_t now_s, struct cdn_task_retention_report *rep,
                       cdn_err **err) {
    *rep = (struct cdn_task_retention_report){0};
    char tasks[4200];
    snprintf(tasks, sizeof(tasks), "%s/tasks", state_dir);
    _cleanup_(closedirp) DIR *d = opendir(tasks);
    if (!d)
        return errno == ENOENT ? 0 : cdn_err_set(err, errno, "opening %s: %m", tasks);
    for (struct dirent *e; (e = readdir(d));)
        if (valid_id(e->d_name))
            retain_one(dirfd(d), tasks, e->d_name, now_s, rep);
    return 0;
}

void cdn_task_retention_report_clear(struct cdn_task_retention_report *rep) {
    for (size_t i = 0; i < rep->n_removed; i++)
        free(rep->removed[i]);
    free(rep->removed);
    *rep = (struct cdn_task_retention_report){0};
}
