/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_evidence: the folder, the manifest (built with jansson) and atomic writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "ev_internal.h"
#include "workspace.h"

void ev_now(char out[32]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

int cdn_write_atomic(const char *path, const void *data, size_t len, cdn_err **err) {
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return cdn_err_set(err, errno, "creating %s: %m", tmp);
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            unlink(tmp);
            return cdn_err_set(err, e, "writing %s: %s", tmp, strerror(e));
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return cdn_err_set(err, e, "saving %s: %s", path, strerror(e));
    }
    return 0;
}

static int mkdir_in(const char *dir, const char *name, cdn_err **err) {
    char path[4300];
    snprintf(path, sizeof(path), "%s%s%s", dir, name ? "/" : "", name ? name : "");
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", path);
    return 0;
}

int cdn_evidence_open(const char *task_dir, const char *task_id, struct cdn_evidence **out,
                      cdn_err **err) {
    _cleanup_(cdn_evidence_freep) struct cdn_evidence *ev = calloc(1, sizeof(*ev));
    if (!ev || asprintf(&ev->dir, "%s/evidence", task_dir) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    ev->art.fd = -1;
    ev->audit_fd = -1;
    int r;
    if ((r = mkdir_in(ev->dir, NULL, err)) < 0 || (r = mkdir_in(ev->dir, "logs", err)) < 0 ||
        (r = mkdir_in(ev->dir, "artifacts", err)) < 0)
        return r;
    char now[32];
    ev_now(now);
    ev->root = json_object();
    ev->cmds = json_array();
    ev->arts = json_array();
    ev->limits = json_array();
    if (!ev->root || !ev->cmds || !ev->arts || !ev->limits)
        return cdn_err_set(err, ENOMEM, "out of memory");
    json_object_set_new(ev->root, "manifest_version", json_integer(1));
    json_object_set_new(ev->root, "task", json_string(task_id));
    json_object_set_new(ev->root, "created", json_string(now));
    json_object_set(ev->root, "commands", ev->cmds);
    json_object_set(ev->root, "artifacts", ev->arts);
    json_object_set(ev->root, "limits_hit", ev->limits);
    if ((r = cdn_evidence_save(ev, err)) < 0)
        return r;
    *out = TAKE_PTR(ev);
    return 0;
}

void cdn_evidence_free(struct cdn_evidence *ev) {
    if (!ev)
        return;
    ev_stream_abort(&ev->art);
    if (ev->audit_fd >= 0)
        close(ev->audit_fd);
    free(ev->art_name);
    json_decref(ev->cmds);
    json_decref(ev->arts);
    json_decref(ev->limits);
    json_decref(ev->root);
    free(ev->dir);
    free(ev);
}

void cdn_evidence_freep(struct cdn_evidence **ev) {
    cdn_evidence_free(*ev);
    *ev = NULL;
}

const char *cdn_evidence_dir(const struct cdn_evidence *ev) { return ev->dir; }

void cdn_evidence_set_redactor(struct cdn_evidence *ev, const struct cdn_redactor *r) {
    ev->redactor = r;
}

void cdn_evidence_fact(struct cdn_evidence *ev, const char *key, const char *value) {
    if (value)
        json_object_set_new(ev->root, key, json_string(value));
    else
        json_object_del(ev->root, key);
}

void cdn_evidence_fact_int(struct cdn_evidence *ev, const char *key, long long value) {
    json_object_set_new(ev->root, key, json_integer(value));
}

void cdn_evidence_append(struct cdn_evidence *ev, const char *key, json_t *value) {
    cdn_err *e = NULL;
    if (ev_audit_append(ev, key, key, value, &e) < 0) /* kept in memory: the next save has it */
        cdn_evidence_limit_hit(ev, "evidence.audit", cdn_err_msg(e));
    cdn_err_free(e);
}

void cdn_evidence_dependencies(struct cdn_evidence *ev, json_t *list) {
    if (!json_array_size(list) && !json_object_get(ev->root, "dependencies")) {
        json_decref(list);
        return; /* nothing changed, and nothing to correct */
    }
    json_object_set(ev->root, "dependencies", list);
    cdn_evidence_event(ev, "dependencies", list);
}

void cdn_evidence_limit_hit(struct cdn_evidence *ev, const char *what, const char *detail) {
    json_array_append_new(ev->limits, json_pack("{s:s, s:s}", "limit", what, "detail", detail));
}

int cdn_evidence_save(struct cdn_evidence *ev, cdn_err **err) {
    /* everything on the audit trail so far is in this version */
    json_object_set_new(ev->root, "audit",
                        json_pack("{s:I, s:s}", "lines", (json_int_t)ev->seq, "head", ev->head));
    _cleanup_free_ char *raw = json_dumps(ev->root, JSON_INDENT(2) | JSON_SORT_KEYS);
    size_t n = 0;
    _cleanup_free_ char *text = raw ? cdn_redact(ev->redactor, raw, strlen(raw), &n) : NULL;
    if (!text)
        return cdn_err_set(err, ENOMEM, "out of memory");
    char path[4300];
    snprintf(path, sizeof(path), "%s/manifest.json", ev->dir);
    text[n] = '\n'; /* the NUL cdn_redact left becomes the file's last line end */
    return cdn_write_atomic(path, text, n + 1, err);
}

int cdn_evidence_diff(struct cdn_evidence *ev, const struct cdn_diff_stats *st, const char *patch,
                      size_t len, cdn_err **err) {
    char path[4300];
    snprintf(path, sizeof(path), "%s/diff.patch", ev->dir);
    _cleanup_free_ char *clean = cdn_redact(ev->redactor, patch ? patch : "", len, &len);
    if (!clean)
        return cdn_err_set(err, ENOMEM, "out of memory");
    patch = clean;
    int r = cdn_write_atomic(path, patch, len, err);
    if (r < 0)
        return r;
    json_t *d =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "files_changed",
                  (json_int_t)st->files, "insertions", (json_int_t)st->insertions, "deletions",
                  (json_int_t)st->deletions, "added", (json_int_t)st->added, "deleted",
                  (json_int_t)st->deleted, "modified", (json_int_t)st->modified, "renamed",
                  (json_int_t)st->renamed, "mode_changed", (json_int_t)st->mode_changed, "binary",
                  (json_int_t)st->binary, "patch", "diff.patch");
    if (!d)
        return cdn_err_set(err, ENOMEM, "out of memory");
    json_object_set_new(ev->root, "diff", d);
    char sha[65];
    cdn_sha256_hex(patch ? patch : "", len, sha);
    cdn_evidence_event(
        ev, "diff",
        json_pack("{s:s, s:I, s:O}", "sha256", sha, "bytes", (json_int_t)len, "stats", d));
    return cdn_evidence_save(ev, err);
}

int cdn_evidence_copy(struct cdn_evidence *ev, const char *src, const char *name, cdn_err **err) {
    _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return cdn_err_set(err, errno, "opening %s: %m", src);
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s", ev->dir, name);
    struct ev_stream s;
    int r = ev_stream_open(&s, path, err);
    if (r < 0)
        return r;
    char buf[65536];
    for (ssize_t n; (n = read(in, buf, sizeof(buf))) != 0;) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ev_stream_abort(&s);
            return cdn_err_set(err, errno, "reading %s: %m", src);
        }
        if ((r = ev_stream_write(&s, buf, (size_t)n, err)) < 0) {
            ev_stream_abort(&s);
            return r;
        }
    }
    char hex[65];
    return ev_stream_close(&s, hex, err);
}

int cdn_evidence_sync(struct cdn_evidence *ev, cdn_err **err) {
    _cleanup_close_ int fd = open(ev->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) < 0)
        return cdn_err_set(err, errno, "syncing %s: %m", ev->dir);
    return 0;
}
