/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_approval: one JSON file per request (jansson), changed only under an exclusive lock on
 * STATE/approvals/.lock and replaced with rename. */
#include "approval.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

static const char *const names[] = {"pending", "approved", "denied", "expired"};

const char *cdn_approval_status_name(enum cdn_approval_status s) {
    return (unsigned)s < 4 ? names[s] : "unknown";
}

static bool valid_id(const char *id) {
    return strlen(id) == 16 && strspn(id, "0123456789abcdef") == 16;
}

static int dir_of(const char *state, char *out, size_t size, cdn_err **err) {
    snprintf(out, size, "%s/approvals", state);
    if (mkdir(state, 0711) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", state);
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", out);
    return 0;
}

/* The store's lock, held until the returned fd is closed. */
static int lock_store(const char *dir, cdn_err **err) {
    char path[4300];
    snprintf(path, sizeof(path), "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return cdn_err_set(err, errno, "%s: %m", path);
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return cdn_err_set(err, e, "locking %s: %s", path, strerror(e));
        }
    return fd;
}

static void now_iso(char out[32]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int save(const char *dir, const char *id, json_t *o, cdn_err **err) {
    char path[4400], tmp[4500];
    snprintf(path, sizeof(path), "%s/%s.json", dir, id);
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
    if (json_dump_file(o, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return cdn_err_set(err, EIO, "saving %s", path);
    }
    return 0;
}

static int load(const char *dir, const char *id, json_t **o, cdn_err **err) {
    if (!valid_id(id))
        return cdn_err_set(err, EINVAL, "'%s' is not an approval id (16 hex digits)", id);
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s.json", dir, id);
    json_error_t je;
    *o = json_load_file(path, 0, &je);
    if (!*o)
        return cdn_err_set(err, access(path, F_OK) < 0 ? ENOENT : EIO, "approval %s: %s", id,
                           access(path, F_OK) < 0 ? "no such request" : je.text);
    return 0;
}

static enum cdn_approval_status status_of(json_t *o) {
    const char *s = json_string_value(json_object_get(o, "status"));
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, names[i]))
            return (enum cdn_approval_status)i;
    return CDN_APPROVAL_EXPIRED;
}

void cdn_approval_whoami(char *out, size_t size) {
    const struct passwd *pw = getpwuid(getuid());
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    const char *tty = isatty(0) ? ttyname(0) : NULL;
    snprintf(out, size, "%s@%s%s%s%s", pw ? pw->pw_name : "uid?", host, tty ? " (" : "",
             tty ? tty : "", tty ? ")" : "");
}

json_t *cdn_approval_parts_json(const struct cdn_policy_decision *d) {
    json_t *parts = json_array();
    for (size_t i = 0; i < d->n; i++) {
        json_t *a = json_array();
        for (size_t j = 0; j < d->parts[i].argc; j++)
            json_array_append_new(a, json_string(d->parts[i].argv[j]));
        json_array_append_new(parts, json_pack("{s:o, s:s, s:s, s:s?}", "argv", a, "action",
                                               cdn_policy_action_name(d->parts[i].action), "rule",
                                               d->parts[i].rule, "reason", d->parts[i].reason));
    }
    return parts;
}

int cdn_approval_request(const char *state_dir, const char *task, const char *const *argv,
                         size_t argc, const struct cdn_policy_decision *d, char id[17],
                         cdn_err **err) {
    char dir[4200];
    int r = dir_of(state_dir, dir, sizeof(dir), err);
    if (r < 0)
        return r;
    uint8_t raw[8];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return cdn_err_set(err, errno, "getrandom: %m");
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    json_t *args = json_array(), *parts = cdn_approval_parts_json(d);
    for (size_t i = 0; i < argc; i++)
        json_array_append_new(args, json_string(argv[i]));
    char now[32];
    now_iso(now);
    json_t *o =
        json_pack("{s:s, s:s, s:o, s:o, s:s, s:s, s:i}", "id", id, "task", task, "argv", args,
                  "parts", parts, "status", "pending", "requested", now, "pid", (int)getpid());
    if (!o)
        return cdn_err_set(err, ENOMEM, "out of memory");
    int lfd = lock_store(dir, err);
    if (lfd < 0) {
        json_decref(o);
        return lfd;
    }
    r = save(dir, id, o, err);
    close(lfd);
    json_decref(o);
    return r;
}

int cdn_approval_get(const char *state_dir, const char *id, enum cdn_approval_status *st, char **by,
                     cdn_err **err) {
    char dir[4200];
    int r = dir_of(state_dir, dir, sizeof(dir), err);
    json_t *o = NULL;
    if (r < 0 || (r = load(dir, id, &o, err)) < 0)
        return r;
    *st = status_of(o);
    const char *b = json_string_value(json_object_get(o, "decided_by"));
    if (by)
        *by = b ? strdup(b) : NULL;
    json_decref(o);
    return 0;
}

int cdn_approval_decide(const char *state_dir, const char *id, enum cdn_approval_status to,
                        const char *by, cdn_err **err) {
    char dir[4200];
    int r = dir_of(state_dir, dir, sizeof(dir), err);
    if (r < 0)
        return r;
    int lfd = lock_store(dir, err);
    if (lfd < 0)
        return lfd;
    json_t *o = NULL;
    if ((r = load(dir, id, &o, err)) == 0) {
        enum cdn_approval_status cur = status_of(o);
        if (cur != CDN_APPROVAL_PENDING) {
            const char *b = json_string_value(json_object_get(o, "decided_by"));
            r = cdn_err_set(err, EALREADY, "approval %s is already %s%s%s", id, names[cur],
                            b ? " by " : "", b ? b : "");
        } else {
            char now[32];
            now_iso(now);
            json_object_set_new(o, "status", json_string(names[to]));
            json_object_set_new(o, "decided_by", json_string(by));
            json_object_set_new(o, "decided", json_string(now));
            r = save(dir, id, o, err);
        }
        json_decref(o);
    }
    close(lfd);
    return r;
}

static int by_requested(const void *a, const void *b) {
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "requested"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "requested"));
    return strcmp(x ? x : "", y ? y : "");
}

int cdn_approval_list(const char *state_dir, bool all, json_t **out, cdn_err **err) {
    char dir[4200];
    int r = dir_of(state_dir, dir, sizeof(dir), err);
    if (r < 0)
        return r;
    _cleanup_(closedirp) DIR *d = opendir(dir);
    if (!d)
        return cdn_err_set(err, errno, "%s: %m", dir);
    json_t **v = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char id[32];
        if (strlen(e->d_name) != 21 || strcmp(e->d_name + 16, ".json"))
            continue;
        snprintf(id, sizeof(id), "%.16s", e->d_name);
        json_t *o = NULL;
        cdn_err *ignored = NULL;
        if (load(dir, id, &o, &ignored) < 0) {
            cdn_err_free(ignored);
            continue;
        }
        json_t **nv = realloc(v, (n + 1) * sizeof(*v));
        if (!nv || (!all && status_of(o) != CDN_APPROVAL_PENDING)) {
            json_decref(o);
            if (nv)
                v = nv;
            continue;
        }
        v = nv;
        v[n++] = o;
    }
    if (n)
        qsort(v, n, sizeof(*v), by_requested);
    *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(*out, v[i]);
    free(v);
    return 0;
}

int cdn_approval_load(const char *state_dir, const char *id, json_t **out, cdn_err **err) {
    char dir[4200];
    int r = dir_of(state_dir, dir, sizeof(dir), err);
    return r < 0 ? r : load(dir, id, out, err);
}
