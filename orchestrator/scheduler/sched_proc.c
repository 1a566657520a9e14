/* SPDX-License-Identifier: Apache-2.0 */
/* A sandbox's background processes (Exec with detach). Once started, a detached command's job
 * answers its client with a handle and carries on inside the worker: its (redacted) output goes
 * to a ring in the evidence folder, procs/<handle>.log, rotated to procs/<handle>.old when it
 * reaches half the ring (the old one's bytes dropped and counted), so at most process_log_bytes
 * (plus one chunk) is kept however much it writes; its record, procs/<handle>.json, is rewritten
 * atomically when it starts, rotates and ends. A stop, a reset or a failure ends them like any
 * command (killed, recorded). Readers (ps, logs --follow) need only the folder. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "evidence.h"
#include "fsutil.h"
#include "sched_internal.h"

#define DEFAULT_RING (8ull << 20)
#define READ_CHUNK (256u << 10)
#define FOLLOW_MS 100

struct proc {
    struct worker *w;
    char handle[16];
    char *dir; /* evidence/procs */
    json_t *rec;
    int fd; /* the current segment */
    uint64_t seg_bytes, seg_max, total, dropped;
};

static void seg_path(const struct proc *p, const char *ext, char *out, size_t n) {
    snprintf(out, n, "%s/%s.%s", p->dir, p->handle, ext);
}

/* The record, atomically (readers never see half of one). */
static void save_rec(struct proc *p) {
    json_object_set_new(p->rec, "output_bytes", json_integer((json_int_t)p->total));
    json_object_set_new(p->rec, "dropped_bytes", json_integer((json_int_t)p->dropped));
    _cleanup_free_ char *text = json_dumps(p->rec, JSON_COMPACT);
    char path[4400];
    seg_path(p, "json", path, sizeof(path));
    if (text)
        cdn_write_atomic(path, text, strlen(text), NULL);
}

/* The current segment becomes the old one (the previous old one's bytes are dropped). */
static void rotate(struct proc *p) {
    char cur[4400], old[4400];
    seg_path(p, "log", cur, sizeof(cur));
    seg_path(p, "old", old, sizeof(old));
    struct stat st;
    if (stat(old, &st) == 0)
        p->dropped += (uint64_t)st.st_size;
    if (rename(cur, old) < 0)
        unlink(cur);
    close(p->fd);
    p->fd = open(cur, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    p->seg_bytes = 0;
    save_rec(p);
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int proc_data(void *ud, int fd, const uint8_t *data, size_t n) {
    (void)fd;
    struct proc *p = ud;
    p->total += n;
    if (p->seg_bytes && p->seg_bytes + n > p->seg_max)
        rotate(p);
    if (p->fd < 0 || write_all(p->fd, data, n) < 0) {
        p->dropped += n; /* the disk said no: counted, the process goes on */
        return 0;
    }
    p->seg_bytes += n;
    return 0;
}

static void proc_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct proc *p = ud;
    const struct cdn_exec_result *x = &res->exec;
    const char *state = rc < 0 && !x->timed_out && !x->signal ? "failed"
                        : x->signal                           ? "killed"
                                                              : "exited";
    json_object_set_new(p->rec, "state", json_string(state));
    json_object_set_new(p->rec, "exit_code", json_integer(x->exit_code));
    json_object_set_new(p->rec, "signal", json_integer(x->signal));
    json_object_set_new(p->rec, "ended_unix_ms", json_integer(sched_wall_ms()));
    if (rc < 0 && e)
        json_object_set_new(p->rec, "error", json_string(cdn_err_msg(e)));
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    save_rec(p);
    cdn_evidence_event(cdn_session_evidence(p->w->sess), "process.ended",
                       json_pack("{s:s, s:s, s:i, s:i, s:I, s:I}", "handle", p->handle, "state",
                                 state, "exit_code", x->exit_code, "signal", x->signal,
                                 "output_bytes", (json_int_t)p->total, "dropped_bytes",
                                 (json_int_t)p->dropped));
    json_decref(p->rec);
    free(p->dir);
    free(p);
}

static const struct cdn_job_ops proc_ops = {.data = proc_data, .done = proc_done};

int sched_proc_detach(struct worker *w, struct job *j, cdn_err **e) {
    struct proc *p = calloc(1, sizeof(*p));
    if (!p)
        return cdn_err_set(e, ENOMEM, "out of memory");
    p->w = w;
    p->fd = -1;
    snprintf(p->handle, sizeof(p->handle), "p%u", ++w->procs);
    uint64_t ring = w->s->o.process_log_bytes ? w->s->o.process_log_bytes : DEFAULT_RING;
    p->seg_max = ring / 2 ? ring / 2 : 1;
    const char *ev = cdn_session_info(w->sess)->evidence;
    json_t *argv = json_array();
    for (size_t i = 0; i < j->spec.argc; i++)
        json_array_append_new(argv, json_string(j->spec.argv[i]));
    p->rec = json_pack("{s:s, s:o, s:s, s:I, s:I}", "handle", p->handle, "argv", argv, "state",
                       "running", "started_unix_ms", (json_int_t)sched_wall_ms(), "ring_bytes",
                       (json_int_t)ring);
    char cur[4400];
    if (!p->rec || asprintf(&p->dir, "%s/procs", ev) < 0) {
        p->dir = NULL;
        json_decref(p->rec);
        free(p);
        return cdn_err_set(e, ENOMEM, "out of memory");
    }
    mkdir(p->dir, 0755);
    seg_path(p, "log", cur, sizeof(cur));
    p->fd = open(cur, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (p->fd < 0) {
        int r = cdn_err_set(e, errno, "%s: %m", cur);
        json_decref(p->rec);
        free(p->dir);
        free(p);
        return r;
    }
    save_rec(p);
    cdn_session_cmd_detach(w->sess, j->cmd);
    cdn_evidence_event(cdn_session_evidence(w->sess), "process.detached",
                       json_pack("{s:s, s:O, s:I}", "handle", p->handle, "argv",
                                 json_object_get(p->rec, "argv"), "ring_bytes", (json_int_t)ring));
    /* The client's answer, once: the job is the worker's from here. */
    struct cdn_job_result res = {0};
    snprintf(res.handle, sizeof(res.handle), "%s", p->handle);
    snprintf(res.sandbox_id, sizeof(res.sandbox_id), "%s", w->b->id);
    j->ops->done(j->ud, 0, NULL, &res);
    j->ops = &proc_ops;
    j->ud = p;
    snprintf(j->handle, sizeof(j->handle), "%s", p->handle);
    return 0;
}

void sched_proc_kill(struct worker *w, struct job *j) {
    cdn_err *e = NULL;
    struct job *target = NULL;
    for (struct job *r = w->running; r && !target; r = r->next)
        if (r->handle[0] && strcmp(r->handle, j->spec.path) == 0)
            target = r;
    int r;
    if (!target)
        r = cdn_err_set(&e, ENOENT, "no running process %s in sandbox %s", j->spec.path, w->b->id);
    else if (w->paused)
        r = cdn_err_set(&e, EBADFD, "sandbox %s is paused: resume it first", w->b->id);
    else
        r = cdn_session_cmd_signal(w->sess, target->cmd, j->spec.signo, &e);
    if (r >= 0)
        cdn_evidence_event(
            cdn_session_evidence(w->sess), "process.signalled",
            json_pack("{s:s, s:i}", "handle", j->spec.path, "signal", j->spec.signo));
    struct cdn_job_result res = {0};
    snprintf(res.sandbox_id, sizeof(res.sandbox_id), "%s", w->b->id);
    snprintf(res.handle, sizeof(res.handle), "%s", j->spec.path);
    j->ops->done(j->ud, r, e, &res);
    cdn_err_free(e);
    job_free(j);
}

/* ---- readers ---- */

static bool valid_handle(const char *h) {
    size_t n = strlen(h);
    return n >= 2 && n < 12 && h[0] == 'p' && strspn(h + 1, "0123456789") == n - 1;
}

static json_t *load_rec(const char *dir, const char *handle) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/procs/%s.json", dir, handle);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    return json_is_object(o) ? o : (json_decref(o), NULL);
}

static int by_number(const void *a, const void *b) {
    return atoi(*(char *const *)a + 1) - atoi(*(char *const *)b + 1);
}

int cdn_sched_procs(const char *evidence_dir, int (*fn)(void *ud, json_t *rec), void *ud,
                    cdn_err **err) {
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/procs", evidence_dir);
    _cleanup_(closedirp) DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : cdn_err_set(err, errno, "%s: %m", dir);
    char *names[1024];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 1024;) {
        char *dot = strrchr(e->d_name, '.');
        if (!dot || strcmp(dot, ".json") != 0)
            continue;
        *dot = '\0';
        if (!valid_handle(e->d_name))
            continue;
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    qsort(names, n, sizeof(names[0]), by_number);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *rec = r < 0 ? NULL : load_rec(evidence_dir, names[i]);
        if (rec)
            r = fn(ud, rec);
        json_decref(rec);
        free(names[i]);
    }
    return r;
}

/* All that is left of fd to fn. */
static int drain(int fd, int (*fn)(void *, const uint8_t *, size_t), void *ud) {
    _cleanup_free_ uint8_t *buf = malloc(READ_CHUNK);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t k = read(fd, buf, READ_CHUNK);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : 0;
        int r = fn(ud, buf, (size_t)k);
        if (r < 0)
            return r;
    }
}

static bool same_file(int fd, const char *path) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino;
}

int cdn_sched_proc_logs(const char *evidence_dir, const char *handle, bool follow,
                        int (*fn)(void *ud, const uint8_t *p, size_t n), bool (*stop)(void *ud),
                        void *ud, json_t **rec, cdn_err **err) {
    *rec = NULL;
    if (!valid_handle(handle) || !(*rec = load_rec(evidence_dir, handle)))
        return cdn_err_set(err, ENOENT, "no process %.40s", handle);
    char old[4400], cur[4400];
    snprintf(old, sizeof(old), "%s/procs/%s.old", evidence_dir, handle);
    snprintf(cur, sizeof(cur), "%s/procs/%s.log", evidence_dir, handle);
    /* Opened before the old segment is read: a rotation meanwhile leaves this fd on what became
     * the old one, read to its end before the new current one. */
    _cleanup_close_ int fd = open(cur, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int ofd = open(old, O_RDONLY | O_CLOEXEC);
    int r = ofd >= 0 && (fd < 0 || !same_file(ofd, cur)) ? drain(ofd, fn, ud) : 0;
    for (;;) {
        if (r >= 0 && fd >= 0)
            r = drain(fd, fn, ud);
        if (r < 0)
            return r == -ENOMEM ? cdn_err_set(err, ENOMEM, "out of memory") : r;
        bool ended = strcmp(json_string_value(json_object_get(*rec, "state")) ?: "", "running");
        if (fd >= 0 && !same_file(fd, cur)) { /* rotated: on to the new current one */
            close(fd);
            fd = open(cur, O_RDONLY | O_CLOEXEC);
            continue;
        }
        if (!follow || (ended && fd >= 0))
            return 0;
        if (stop && stop(ud))
            return cdn_err_set(err, ECANCELED, "the client went away");
        poll(NULL, 0, FOLLOW_MS);
        if (fd < 0)
            fd = open(cur, O_RDONLY | O_CLOEXEC);
        json_t *now = load_rec(evidence_dir, handle);
        if (now) {
            json_decref(*rec);
            *rec = now;
        }
    }
}
