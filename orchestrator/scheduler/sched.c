/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_sched: sandboxes queued, started as slots free up, stopped on request or when their time
 * is up; jobs handed to their workers; approvals decided. */
#include "scheduler.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "approval.h"
#include "buf.h"
#include "cleanup.h"
#include "evidence.h"
#include "fsutil.h"
#include "fsutil.h"
#include "sched_internal.h"
#include "task_gc.h"
#include "vm.h"

#define TICK_MS 250

void sched_wake(int fd) {
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: the reader wakes anyway */
    }
}

static void free_strv(char **v) {
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void job_free(struct job *j) {
    if (!j)
        return;
    free_strv(j->argv);
    free_strv(j->env);
    free(j->cwd);
    free(j->path);
    free(j->buf);
    free(j->decided_by);
    free(j);
}

void job_fail(struct job *j, int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cdn_err *e = NULL;
    cdn_err_set(&e, code, "%s", msg);
    struct cdn_job_result res = {0};
    j->ops->done(j->ud, -code, e, &res);
    cdn_err_free(e);
    job_free(j);
}

static char **dup_strv(const char *const *v, size_t n) {
    char **out = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            free_strv(out);
            return NULL;
        }
    return out;
}

static struct job *job_new(const struct cdn_job_spec *spec, const struct cdn_job_ops *ops,
                           void *ud) {
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->spec = *spec;
    j->ops = ops;
    j->ud = ud;
    bool ok = true;
    if (spec->argc) {
        ok = ok && (j->argv = dup_strv(spec->argv, spec->argc));
        j->spec.argv = (const char *const *)j->argv;
    }
    if (spec->envc) {
        ok = ok && (j->env = dup_strv(spec->env, spec->envc));
        j->spec.env = (const char *const *)j->env;
    }
    if (spec->cwd && *spec->cwd)
        ok = ok && (j->cwd = strdup(spec->cwd));
    j->spec.cwd = j->cwd;
    if (spec->path)
        ok = ok && (j->path = strdup(spec->path));
    j->spec.path = j->path;
    bool carries =
        spec->kind == CDN_JOB_WRITE || spec->kind == CDN_JOB_POLICY || spec->kind == CDN_JOB_NOTE;
    const uint8_t *src = carries ? spec->data : spec->stdin_data;
    size_t n = carries ? spec->len : spec->stdin_len;
    if (n) {
        ok = ok && (j->buf = malloc(n));
        if (j->buf)
            memcpy(j->buf, src, n);
    }
    j->spec.data = carries ? j->buf : NULL;
    j->spec.stdin_data = spec->kind == CDN_JOB_EXEC ? j->buf : NULL;
    if (!ok) {
        job_free(j);
        return NULL;
    }
    return j;
}

/* ---- sandboxes ---- */

void sbx_free(struct sbx *b) {
    if (!b)
        return;
    for (struct job *j = b->queue, *next; j; j = next) {
        next = j->next;
        job_fail(j, ECANCELED, "sandbox %s stopped before the job ran", b->id);
    }
    if (b->wake >= 0)
        close(b->wake);
    cdn_warm_free(b->warm); /* placed but never booted */
    cdn_policy_free(b->policy);
    free(b->tenant);
    free(b->repo);
    free(b->ref);
    free(b->image);
    free(b->kernel_args);
    free_strv(b->artifacts);
    free(b->stop_reason);
    free(b);
}

static bool valid_policy_name(const char *n) {
    size_t len = strlen(n);
    return len > 0 && len < 64 && strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789-_") == len;
}

/* The policy a request names, parsed; its text for the store. */
static int load_policy(struct cdn_sched *s, const char *text, const char *name,
                       struct cdn_policy **out, char **text_out, cdn_err **err) {
    if (text && *text) {
        int r = cdn_policy_parse("policy", text, strlen(text), out, err);
        if (r < 0)
            return cdn_err_recode(err, EINVAL);
        *text_out = strdup(text);
        return *text_out ? 0 : cdn_err_set(err, ENOMEM, "out of memory");
    }
    if (!name || !*name) {
        name = s->default_policy;
        if (strcmp(name, "none") == 0) { /* not gated */
            *out = NULL;
            *text_out = NULL;
            return 0;
        }
    }
    if (!valid_policy_name(name))
        return cdn_err_set(err, EINVAL, "'%s' is not a policy name (a-z, 0-9, '-', '_')", name);
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/%s.yaml", s->policies_dir, name) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    if (access(path, R_OK) < 0)
        return cdn_err_set(err, ENOENT, "no policy named '%s' (looked for %s)", name, path);
    _cleanup_free_ char *buf = NULL;
    size_t n;
    int r = cdn_read_file(path, CDN_POLICY_MAX_BYTES, &buf, &n, err);
    if (r < 0)
        return r;
    r = cdn_policy_parse(path, buf, n, out, err);
    if (r < 0)
        return r;
    *text_out = TAKE_PTR(buf);
    return 0;
}

static json_t *limits_json(const struct cdn_sched_limits *l) {
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:i}", "cpus", l->cpus,
                     "memory_mib", l->memory_mib, "disk_mib", l->disk_mib, "wall_seconds",
                     l->wall_seconds, "command_timeout_seconds", l->command_timeout_seconds,
                     "max_processes", l->max_processes, "output_bytes", (json_int_t)l->output_bytes,
                     "max_files_returned", (json_int_t)l->max_files_returned, "max_bytes_returned",
                     (json_int_t)l->max_bytes_returned, "max_depth_returned",
                     l->max_depth_returned);
}

static void limits_from_json(json_t *o, struct cdn_sched_limits *l) {
    *l = (struct cdn_sched_limits){0};
    l->cpus = (unsigned)json_integer_value(json_object_get(o, "cpus"));
    l->memory_mib = (unsigned)json_integer_value(json_object_get(o, "memory_mib"));
    l->disk_mib = (unsigned)json_integer_value(json_object_get(o, "disk_mib"));
    l->wall_seconds = (unsigned)json_integer_value(json_object_get(o, "wall_seconds"));
    l->command_timeout_seconds =
        (unsigned)json_integer_value(json_object_get(o, "command_timeout_seconds"));
    l->max_processes = (unsigned)json_integer_value(json_object_get(o, "max_processes"));
    l->output_bytes = (uint64_t)json_integer_value(json_object_get(o, "output_bytes"));
    l->max_files_returned = (uint64_t)json_integer_value(json_object_get(o, "max_files_returned"));
    l->max_bytes_returned = (uint64_t)json_integer_value(json_object_get(o, "max_bytes_returned"));
    l->max_depth_returned = (unsigned)json_integer_value(json_object_get(o, "max_depth_returned"));
}

/* What a sandbox boots with besides its limits (kept in the store's spec, as the limits are). */
struct boot_extra {
    uint32_t boot_timeout_s;
    uint64_t max_artifact_bytes;
};

/* The session's spec from the request's limits bounded by the policy. */
static int fill_spec(struct cdn_sched *s, struct sbx *b, const struct cdn_sched_limits *l,
                     const struct boot_extra *x, cdn_err **err) {
    struct cdn_task_spec *t = &b->spec;
    *t = (struct cdn_task_spec){.state_dir = s->state_dir,
                                .images_dir = s->images_dir,
                                .image = b->image,
                                .uri = s->uri,
                                .memory_mib = l->memory_mib,
                                .vcpus = l->cpus,
                                .accel = s->accel,
                                .boot_timeout_ms = x->boot_timeout_s ? (int)x->boot_timeout_s * 1000
                                                                     : s->o.boot_timeout_ms,
                                .kernel_args = b->kernel_args,
                                .artifacts = (const char *const *)b->artifacts,
                                .artifact_max_bytes = x->max_artifact_bytes,
                                .timeout_ms = l->command_timeout_seconds * 1000u,
                                .output_limit = l->output_bytes,
                                .cancel = &b->cancel,
                                .repo = b->repo,
                                .ref = b->ref,
                                .disk_max_bytes = (uint64_t)l->disk_mib << 20,
                                .policy = b->policy,
                                .policy_sha256 = b->policy_sha256[0] ? b->policy_sha256 : NULL};
    t->result_limits.max_entries = l->max_files_returned;
    t->result_limits.max_total_bytes = l->max_bytes_returned;
    t->result_limits.max_depth = l->max_depth_returned;
    while (b->artifacts && b->artifacts[t->n_artifacts])
        t->n_artifacts++;
    int r = cdn_task_apply_limits(t, &b->nproc, err);
    if (r == -EPERM)
        return cdn_err_recode(err, EDQUOT);
    if (r < 0)
        return r;
    if (l->max_processes && (!t->n_rlimits || l->max_processes < b->nproc.soft)) {
        b->nproc = (struct cdn_rlimit){.resource = CORDON_AGENT__RLIMIT__RLIMIT_PROCESSES,
                                       .soft = l->max_processes,
                                       .hard = l->max_processes};
        t->rlimits = &b->nproc;
        t->n_rlimits = 1;
    }
    return 0;
}

/* The session's notices (on the worker's thread): logged, and told to the job the VM boots for. */
static void log_notice(void *ud, const char *line) {
    struct sbx *b = ud;
    sched_log(b->sched, "sandbox %s: %s", b->id, line);
    struct job *j = b->booting_for;
    if (j && j->ops->notice)
        j->ops->notice(j->ud, line);
}

unsigned sched_image_memory_mib(const char *image) {
    return strcmp(image, "devbox") == 0 ? 1024 : 512; /* the session's defaults (task_vmup.c) */
}

/* What its VM gets (the session's default when the limits set none). */
static uint64_t sbx_memory_mib(const struct cdn_task_spec *t, const char *image) {
    return t->memory_mib ? t->memory_mib : sched_image_memory_mib(image);
}

/* A sandbox in memory from its stored record (request already validated). */
static int sbx_from_record(struct cdn_sched *s, const struct cdn_store_sandbox *rec,
                           struct sbx **out, cdn_err **err) {
    struct sbx *b = calloc(1, sizeof(*b));
    if (!b)
        return cdn_err_set(err, ENOMEM, "out of memory");
    b->wake = -1;
    b->host = -1;
    b->sched = s;
    snprintf(b->id, sizeof(b->id), "%s", rec->id);
    b->state = rec->state;
    b->expires_ms = rec->expires_ms;
    b->persist = rec->persist;
    b->tenant = strdup(rec->tenant);
    b->repo = rec->repo && *rec->repo ? strdup(rec->repo) : NULL;
    b->ref = rec->ref && *rec->ref ? strdup(rec->ref) : NULL;
    b->image = strdup(rec->image && *rec->image ? rec->image : "minimal");
    b->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int r = 0;
    if (!b->tenant || !b->image || b->wake < 0)
        r = cdn_err_set(err, ENOMEM, "out of memory");
    json_error_t je;
    json_t *spec = rec->spec_json ? json_loads(rec->spec_json, 0, &je) : NULL;
    struct cdn_sched_limits l;
    limits_from_json(json_object_get(spec, "limits"), &l);
    struct boot_extra x = {.boot_timeout_s = (uint32_t)json_integer_value(
                               json_object_get(spec, "boot_timeout_seconds")),
                           .max_artifact_bytes = (uint64_t)json_integer_value(
                               json_object_get(spec, "max_artifact_bytes"))};
    b->defer_boot = json_is_true(json_object_get(spec, "defer_boot"));
    b->priority = (int)json_integer_value(json_object_get(spec, "priority"));
    const char *kargs = json_string_value(json_object_get(spec, "kernel_args"));
    if (r == 0 && kargs && !(b->kernel_args = strdup(kargs)))
        r = cdn_err_set(err, ENOMEM, "out of memory");
    json_t *arts = json_object_get(spec, "artifacts");
    if (r == 0 && json_array_size(arts)) {
        b->artifacts = calloc(json_array_size(arts) + 1, sizeof(char *));
        for (size_t i = 0; b->artifacts && i < json_array_size(arts); i++)
            b->artifacts[i] = strdup(json_string_value(json_array_get(arts, i)) ?: "");
        if (!b->artifacts)
            r = cdn_err_set(err, ENOMEM, "out of memory");
    }
    const char *pname = json_string_value(json_object_get(spec, "policy_name"));
    if (r == 0 && rec->policy) { /* none stored: not gated */
        r = cdn_policy_parse(pname ? pname : "policy", rec->policy, strlen(rec->policy), &b->policy,
                             err);
        cdn_sha256_hex(rec->policy, strlen(rec->policy), b->policy_sha256);
    }
    json_decref(spec);
    if (r == 0)
        r = fill_spec(s, b, &l, &x, err);
    b->spec.on_notice = log_notice;
    b->spec.ud = b;
    b->vcpus = b->spec.vcpus ? b->spec.vcpus : 1;
    b->memory_mib = sbx_memory_mib(&b->spec, b->image);
    if (r < 0) {
        sbx_free(b);
        return r;
    }
    *out = b;
    return 0;
}

static struct sbx *find_live(struct cdn_sched *s, const char *id) {
    for (struct sbx *b = s->live; b; b = b->next)
        if (strcmp(b->id, id) == 0)
            return b;
    return NULL;
}

static void append_live(struct cdn_sched *s, struct sbx *b) {
    b->seq = ++s->seq;
    struct sbx **tail = &s->live;
    while (*tail)
        tail = &(*tail)->next;
    *tail = b;
}

#define MAX_KERNEL_ARGS 32
#define MAX_ARTIFACTS 64

/* What a request adds to how its VM boots, bounded. */
static int check_boot_request(struct cdn_sched *s, const struct cdn_sched_create *req,
                              cdn_err **err) {
    if (req->n_kernel_args > MAX_KERNEL_ARGS)
        return cdn_err_set(err, EINVAL, "at most %d kernel_args", MAX_KERNEL_ARGS);
    for (size_t i = 0; i < req->n_kernel_args; i++) {
        const char *a = req->kernel_args[i];
        size_t n = strlen(a);
        if (!n || n > 256 || strpbrk(a, " \t\n\r\"'\\"))
            return cdn_err_set(err, EINVAL,
                               "kernel_args[%zu] must be one word of at most 256 bytes, without "
                               "quotes (got '%.64s')",
                               i, a);
    }
    if (req->n_artifacts > MAX_ARTIFACTS)
        return cdn_err_set(err, EINVAL, "at most %d artifacts", MAX_ARTIFACTS);
    for (size_t i = 0; i < req->n_artifacts; i++)
        if (!*req->artifacts[i] || strlen(req->artifacts[i]) > 1024)
            return cdn_err_set(err, EINVAL, "artifacts[%zu] must be a glob of 1 to 1024 bytes", i);
    if (req->max_artifact_bytes > (1ull << 40))
        return cdn_err_set(err, EDQUOT, "max_artifact_bytes is over 1 TiB");
    unsigned cap = (unsigned)s->o.boot_timeout_ms / 1000;
    if (cap && req->boot_timeout_s > cap)
        return cdn_err_set(err, EDQUOT, "boot_timeout_seconds %u is over the daemon's limit of %u",
                           req->boot_timeout_s, cap);
    return 0;
}

/* A full queue refuses, with when to try again. */
static int check_queue(struct cdn_sched *s, const char *tenant, uint32_t *retry_ms, cdn_err **err) {
    pthread_mutex_lock(&s->mu);
    struct sched_tenant *t = sched_tenant(s, tenant);
    uint32_t hint = sched_retry_hint_ms(s); /* recounts */
    unsigned mine = t ? t->queued : 0, max = t && t->max_queued ? t->max_queued : s->o.max_queued;
    unsigned total = s->queued_total;
    pthread_mutex_unlock(&s->mu);
    if (!t)
        return cdn_err_set(err, ENOMEM, "out of memory");
    if (mine < max && total < s->o.max_queued_total)
        return 0;
    if (retry_ms)
        *retry_ms = hint;
    if (mine >= max)
        return cdn_err_set(err, EAGAIN,
                           "tenant %s has %u sandboxes queued, its limit; retry in %u.%u s", tenant,
                           mine, hint / 1000, hint % 1000 / 100);
    return cdn_err_set(err, EAGAIN,
                       "the daemon has %u sandboxes queued, its limit; retry in %u.%u s", total,
                       hint / 1000, hint % 1000 / 100);
}

int cdn_sched_create(struct cdn_sched *s, const char *tenant, const struct cdn_sched_create *req,
                     struct cdn_store_sandbox *out, uint32_t *retry_ms, cdn_err **err) {
    if (req->priority < -1000 || req->priority > 1000)
        return cdn_err_set(err, EINVAL, "priority must be from -1000 to 1000 (got %d)",
                           req->priority);
    *out = (struct cdn_store_sandbox){0};
    const char *image = req->image && *req->image ? req->image : "minimal";
    if (strcmp(image, "minimal") != 0 && strcmp(image, "devbox") != 0)
        return cdn_err_set(err, EINVAL, "unknown image '%s' (available: minimal, devbox)", image);
    if (req->ref && *req->ref && !(req->repo && *req->repo))
        return cdn_err_set(err, EINVAL, "a ref ('%s') needs a repo", req->ref);
    if (req->labels_json) {
        json_error_t je;
        json_t *lj = json_loads(req->labels_json, 0, &je);
        bool ok = json_is_object(lj);
        const char *k;
        json_t *v;
        json_object_foreach(lj, k, v) ok = ok && json_is_string(v);
        json_decref(lj);
        if (!ok)
            return cdn_err_set(err, EINVAL, "labels must be a JSON object of strings");
    }
    int r = check_boot_request(s, req, err);
    if (r < 0)
        return r;
    _cleanup_(cdn_policy_freep) struct cdn_policy *policy = NULL;
    _cleanup_free_ char *text = NULL;
    if ((r = load_policy(s, req->policy_text, req->policy_name, &policy, &text, err)) < 0)
        return r;
    /* The limits against the policy's, before anything is stored. */
    struct sbx probe = {.sched = s, .policy = policy, .image = (char *)image};
    struct boot_extra x = {.boot_timeout_s = req->boot_timeout_s,
                           .max_artifact_bytes = req->max_artifact_bytes};
    if ((r = fill_spec(s, &probe, &req->limits, &x, err)) < 0)
        return r;
    pthread_mutex_lock(&s->mu);
    r = sched_fits_somewhere(s, probe.spec.vcpus ? probe.spec.vcpus : 1,
                             sbx_memory_mib(&probe.spec, image), err);
    pthread_mutex_unlock(&s->mu);
    if (r < 0)
        return r;
    if (req->owner && (strlen(req->owner) > 128 || (*req->owner && !req->persist)))
        return cdn_err_set(err, EINVAL,
                           *req->owner && !req->persist
                               ? "an owner is a session's: ask for persist too"
                               : "owner is at most 128 bytes");
    uint32_t max_ttl = req->persist ? s->o.session_max_ttl_s : s->o.max_ttl_s;
    uint32_t ttl = req->ttl_s                      ? req->ttl_s
                   : s->o.default_ttl_s <= max_ttl ? s->o.default_ttl_s
                                                   : max_ttl;
    if (ttl > max_ttl)
        return cdn_err_set(err, EDQUOT, "ttl_seconds %u is over the daemon's limit of %u%s", ttl,
                           max_ttl,
                           req->persist ? " for a session" : " (a session may live longer)");
    const struct cdn_policy_limits *pl = policy ? cdn_policy_limits(policy) : NULL;
    if (pl && pl->wall_seconds && ttl > pl->wall_seconds)
        ttl = pl->wall_seconds; /* the policy's wall clock bounds the sandbox's life */
    json_t *spec = json_pack("{s:o, s:s?, s:i, s:o, s:i, s:I, s:b, s:i}", "limits",
                             limits_json(&req->limits), "policy_name",
                             req->policy_text && *req->policy_text ? NULL
                             : policy                              ? cdn_policy_name(policy)
                                                                   : NULL,
                             "ttl_seconds", (int)ttl, "artifacts", json_array(),
                             "boot_timeout_seconds", (int)req->boot_timeout_s, "max_artifact_bytes",
                             (json_int_t)req->max_artifact_bytes, "defer_boot", req->defer_boot,
                             "priority", req->priority);
    struct cdn_buf kargs = {0};
    for (size_t i = 0; spec && i < req->n_kernel_args; i++)
        if ((i && cdn_buf_append(&kargs, " ", 1) < 0) ||
            cdn_buf_append(&kargs, req->kernel_args[i], strlen(req->kernel_args[i])) < 0)
            json_decref(TAKE_PTR(spec));
    if (spec && req->n_kernel_args)
        json_object_set_new(spec, "kernel_args",
                            json_stringn((const char *)cdn_buf_head(&kargs), cdn_buf_len(&kargs)));
    cdn_buf_free(&kargs);
    for (size_t i = 0; spec && i < req->n_artifacts; i++)
        json_array_append_new(json_object_get(spec, "artifacts"), json_string(req->artifacts[i]));
    _cleanup_free_ char *spec_json = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    json_decref(spec);
    if (!spec_json)
        return cdn_err_set(err, ENOMEM, "out of memory");
    if ((r = check_queue(s, tenant, retry_ms, err)) < 0)
        return r;
    struct cdn_store_sandbox rec = {.tenant = (char *)tenant,
                                    .repo = (char *)(req->repo && *req->repo ? req->repo : NULL),
                                    .ref = (char *)(req->ref && *req->ref ? req->ref : NULL),
                                    .image = (char *)image,
                                    .policy = text,
                                    .labels_json = (char *)req->labels_json,
                                    .spec_json = spec_json,
                                    .persist = req->persist,
                                    .owner =
                                        (char *)(req->owner && *req->owner ? req->owner : NULL),
                                    .created_ms = sched_wall_ms()};
    rec.expires_ms = rec.created_ms + (int64_t)ttl * 1000;
    if ((r = cdn_store_sandbox_create(s->o.store, &rec, err)) < 0)
        return r;
    struct sbx *b;
    if ((r = sbx_from_record(s, &rec, &b, err)) < 0) {
        cdn_store_sandbox_set_state(s->o.store, tenant, rec.id, CDN_SANDBOX_FAILED,
                                    cdn_err_msg(*err), NULL);
        return r;
    }
    pthread_mutex_lock(&s->mu);
    append_live(s, b);
    sched_dispatch_locked(s);
    pthread_mutex_unlock(&s->mu);
    return cdn_store_sandbox_get(s->o.store, tenant, rec.id, out, err);
}

/* ---- jobs, decisions, stops ---- */

const char *cdn_job_kind_name(enum cdn_job_kind k) {
    static const char *const names[] = {
        "exec",  "write",  "read", "diff",         "policy",        "pause", "resume",
        "reset", "extend", "kill", "preview open", "preview close", "note",  "list"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

static bool session_job(enum cdn_job_kind k) {
    return k == CDN_JOB_PAUSE || k == CDN_JOB_RESUME || k == CDN_JOB_RESET || k == CDN_JOB_EXTEND;
}

int cdn_sched_submit(struct cdn_sched *s, const char *tenant, const char *id,
                     const struct cdn_job_spec *spec, const struct cdn_job_ops *ops, void *ud,
                     cdn_err **err) {
    if (spec->kind == CDN_JOB_EXEC && !spec->argc)
        return cdn_err_set(err, EINVAL, "argv is empty");
    if ((spec->kind == CDN_JOB_WRITE || spec->kind == CDN_JOB_READ || spec->kind == CDN_JOB_LIST) &&
        (!spec->path || spec->path[0] != '/'))
        return cdn_err_set(err, EINVAL, "path must be absolute (got '%s')",
                           spec->path ? spec->path : "");
    struct job *j = job_new(spec, ops, ud);
    if (!j)
        return cdn_err_set(err, ENOMEM, "out of memory");
    /* A live sandbox of this tenant's takes it at once (no store read on the way). */
    pthread_mutex_lock(&s->mu);
    struct sbx *b = find_live(s, id);
    bool mine = b && strcmp(b->tenant, tenant) == 0;
    if (mine && !b->stop && session_job(spec->kind) && !b->persist) {
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        return cdn_err_set(err, EBADFD,
                           "sandbox %s is ephemeral: only a session (created with persist) can "
                           "be %s",
                           id,
                           spec->kind == CDN_JOB_PAUSE    ? "paused"
                           : spec->kind == CDN_JOB_RESUME ? "resumed"
                           : spec->kind == CDN_JOB_RESET  ? "reset"
                                                          : "extended");
    }
    if (mine && !b->stop) {
        if (b->queue_tail)
            b->queue_tail->next = j;
        else
            b->queue = j;
        b->queue_tail = j;
        sched_wake(b->wake);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    pthread_mutex_unlock(&s->mu);
    job_free(j);
    /* Otherwise: another tenant's or unknown (NOT_FOUND), or no longer running (why). */
    struct cdn_store_sandbox rec;
    int r = cdn_store_sandbox_get(s->o.store, tenant, id, &rec, err);
    if (r < 0)
        return r;
    r = cdn_err_set(err, EBADFD, "sandbox %s is %s%s%s", id,
                    mine ? "stopping" : cdn_sandbox_state_name(rec.state),
                    rec.error && *rec.error ? ": " : "", rec.error ? rec.error : "");
    cdn_store_sandbox_clear(&rec);
    return r;
}

int cdn_sched_decide(struct cdn_sched *s, const char *tenant, const char *approval_id, bool approve,
                     const char *by, cdn_err **err) {
    enum cdn_approval_status to = approve ? CDN_APPROVAL_APPROVED : CDN_APPROVAL_DENIED;
    int r = cdn_store_approval_decide(s->o.store, tenant, approval_id, to, by, err);
    if (r < 0)
        return r;
    struct cdn_store_approval a;
    if (cdn_store_approval_get(s->o.store, tenant, approval_id, &a, NULL) < 0)
        return 0;
    pthread_mutex_lock(&s->mu);
    struct sbx *b = find_live(s, a.sandbox);
    if (b)
        sched_wake(b->wake); /* its worker reads the decision from the store */
    pthread_mutex_unlock(&s->mu);
    cdn_store_approval_clear(&a);
    return 0;
}

int sched_remove(struct cdn_sched *s, const char *tenant, const char *id, cdn_err **err) {
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/tasks/%s", s->state_dir, id);
    cdn_rmtree(dir);
    return cdn_store_sandbox_delete(s->o.store, tenant, id, err);
}

int cdn_sched_stop(struct cdn_sched *s, const char *tenant, const char *id, bool remove,
                   cdn_err **err) {
    struct cdn_store_sandbox rec;
    int r = cdn_store_sandbox_get(s->o.store, tenant, id, &rec, err);
    if (r < 0)
        return r;
    cdn_store_sandbox_clear(&rec);
    pthread_mutex_lock(&s->mu);
    struct sbx *b = find_live(s, id);
    if (b && b->running) {
        /* The worker stops it (and removes it when asked): wait for it to be gone. */
        if (!b->stop) {
            b->stop = true;
            b->stop_reason = strdup(remove ? "deleted" : "cancelled");
        }
        b->remove = b->remove || remove;
        b->cancel = 1;
        sched_wake(b->wake);
        while (find_live(s, id))
            pthread_cond_wait(&s->cond, &s->mu);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (b) { /* queued: it never starts */
        struct sbx **pp = &s->live;
        while (*pp != b)
            pp = &(*pp)->next;
        *pp = b->next;
    }
    pthread_mutex_unlock(&s->mu);
    sbx_free(b);
    if (!remove) {
        r = cdn_store_sandbox_set_state(s->o.store, tenant, id, CDN_SANDBOX_STOPPED, "cancelled",
                                        err);
        return r == -EINVAL ? 0 : r; /* final already */
    }
    return sched_remove(s, tenant, id, err);
}

int cdn_sched_evidence_dir(struct cdn_sched *s, const char *id, char *out, size_t size) {
    return snprintf(out, size, "%s/tasks/%s/evidence", s->state_dir, id) < (int)size
               ? 0
               : -ENAMETOOLONG;
}

const char *cdn_sched_state_dir(const struct cdn_sched *s) { return s->state_dir; }

/* ---- retention ---- */

/* The policies' retention on finished sandboxes' folders; those whose folder went are forgotten. */
static void sched_retention(struct cdn_sched *s) {
    struct cdn_task_retention_report rep;
    cdn_err *e = NULL;
    if (cdn_task_retention(s->state_dir, sched_wall_ms() / 1000, &rep, &e) < 0) {
        sched_log(s, "retention: %s", cdn_err_msg(e));
        cdn_err_free(e);
        return;
    }
    for (size_t i = 0; i < rep.n_removed; i++) {
        struct cdn_store_sandbox rec;
        if (cdn_store_sandbox_get(s->o.store, NULL, rep.removed[i], &rec, NULL) == 0) {
            cdn_store_sandbox_delete(s->o.store, rec.tenant, rec.id, NULL);
            cdn_store_sandbox_clear(&rec);
        }
    }
    if (rep.workspaces || rep.folders)
        sched_log(s, "retention: %u worktree%s and %u sandbox%s past their policy's days removed",
                  rep.workspaces, rep.workspaces == 1 ? "" : "s", rep.folders,
                  rep.folders == 1 ? "" : "es");
    cdn_task_retention_report_clear(&rep);
}

/* ---- the ticker: TTLs ---- */

static void *ticker(void *arg) {
    struct cdn_sched *s = arg;
    for (;;) {
        uint64_t v;
        struct pollfd pfd = {.fd = s->tick_wake, .events = POLLIN};
        if (poll(&pfd, 1, TICK_MS) > 0 && read(s->tick_wake, &v, sizeof(v)) < 0) {
            /* drained */
        }
        pthread_mutex_lock(&s->mu);
        if (s->closing) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        int64_t now = sched_wall_ms();
        for (struct sbx *b = s->live; b; b = b->next)
            if (b->running && !b->stop && b->expires_ms && now >= b->expires_ms) {
                b->stop = true;
                b->stop_reason = strdup("its ttl expired");
                b->cancel = 1;
                sched_wake(b->wake);
            }
        pthread_mutex_unlock(&s->mu);
        sched_hosts_check(s);
        if (now - s->retention_ms >= 3600 * 1000) { /* hourly */
            s->retention_ms = now;
            sched_retention(s);
        }
        /* Queued sandboxes past their time never start. */
        struct sbx *expired = NULL;
        pthread_mutex_lock(&s->mu);
        for (struct sbx **pp = &s->live; *pp;) {
            struct sbx *b = *pp;
            if (!b->running && b->expires_ms && now >= b->expires_ms) {
                *pp = b->next;
                b->next = expired;
                expired = b;
            } else {
                pp = &b->next;
            }
        }
        pthread_mutex_unlock(&s->mu);
        for (struct sbx *b = expired, *next; b; b = next) {
            next = b->next;
            cdn_store_sandbox_set_state(s->o.store, b->tenant, b->id, CDN_SANDBOX_STOPPED,
                                        "its ttl expired before it started", NULL);
            sbx_free(b);
        }
    }
}

/* ---- open and close ---- */

static int requeue(void *ud, const struct cdn_store_sandbox *rec) {
    struct cdn_sched *s = ud;
    struct sbx *b;
    cdn_err *e = NULL;
    if (sbx_from_record(s, rec, &b, &e) < 0) {
        cdn_store_sandbox_set_state(s->o.store, rec->tenant, rec->id, CDN_SANDBOX_FAILED,
                                    cdn_err_msg(e), NULL);
        cdn_err_free(e);
        return 0;
    }
    append_live(s, b);
    return 0;
}

static char *dup_or(const char *v, const char *def) { return strdup(v && *v ? v : def); }

int cdn_sched_open(const struct cdn_sched_opts *opts, struct cdn_sched **out, cdn_err **err) {
    _cleanup_(cdn_sched_freep) struct cdn_sched *s = calloc(1, sizeof(*s));
    if (!s)
        return cdn_err_set(err, ENOMEM, "out of memory");
    s->o = *opts;
    s->tick_wake = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->review_mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (!s->o.max_running)
        s->o.max_running = 4;
    if (!s->o.max_queued)
        s->o.max_queued = 1000;
    if (!s->o.max_queued_total)
        s->o.max_queued_total = 10000;
    if (!s->o.tenant_max_running)
        s->o.tenant_max_running = s->o.max_running;
    if (!s->o.cpu_overcommit)
        s->o.cpu_overcommit = 16;
    if (!s->o.memory_reserve_mib)
        s->o.memory_reserve_mib = 1024;
    if (s->o.host_check_ms <= 0)
        s->o.host_check_ms = 2000;
    if (!s->o.default_ttl_s)
        s->o.default_ttl_s = 3600;
    if (!s->o.max_ttl_s)
        s->o.max_ttl_s = 24 * 3600;
    if (!s->o.session_max_ttl_s)
        s->o.session_max_ttl_s = 7 * 24 * 3600;
    if (!s->o.pause_to_disk_s)
        s->o.pause_to_disk_s = 600;
    if (!s->o.approval_timeout_s)
        s->o.approval_timeout_s = 3600;
    if (s->o.boot_timeout_ms <= 0)
        s->o.boot_timeout_ms = 60000;
    s->state_dir = dup_or(opts->state_dir, "/var/lib/cordon");
    s->images_dir = dup_or(opts->images_dir, "/usr/lib/cordon/images");
    s->policies_dir = dup_or(opts->policies_dir, "/etc/cordon/policies");
    s->default_policy = dup_or(opts->default_policy, "default-deny");
    s->uri = opts->uri ? strdup(opts->uri) : NULL;
    s->accel = dup_or(opts->accel, "auto");
    if (!s->state_dir || !s->images_dir || !s->policies_dir || !s->default_policy || !s->accel)
        return cdn_err_set(err, ENOMEM, "out of memory");
    s->o.state_dir = s->state_dir;
    int r;
    /* The daemons the sandboxes need, kept up while cordond runs; leftovers of a previous
     * cordond (killed) reaped. */
    if (asprintf(&s->daemon_dir, "%s/run", s->state_dir) < 0) {
        s->daemon_dir = NULL;
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    mkdir(s->state_dir, 0711);
    for (size_t i = 0; i < s->o.n_tenants; i++) {
        const struct cdn_sched_tenant *q = &s->o.tenants[i];
        struct sched_tenant *t = sched_tenant(s, q->name);
        if (!t)
            return cdn_err_set(err, ENOMEM, "out of memory");
        t->max_running = q->max_running;
        t->max_queued = q->max_queued;
        t->weight = q->weight ? q->weight : 1;
    }
    if ((r = sched_hosts_open(s, err)) < 0)
        return r;
    int lost = cdn_store_recover(s->o.store, NULL, NULL, err);
    if (lost < 0)
        return lost;
    if ((r = cdn_store_commands_interrupted(s->o.store, err)) < 0)
        return r;
    struct cdn_task_gc_report gc = {0};
    for (size_t i = 0; i < s->n_hosts; i++) {
        struct cdn_task_gc_report one;
        if ((r = cdn_task_gc(s->state_dir, s->hosts[i].conn, &one, err)) < 0)
            return r;
        gc.tasks += one.tasks;
        gc.domains += one.domains;
        gc.files += one.files;
    }
    if (lost || gc.tasks)
        sched_log(s,
                  "recovered after a restart: %d sandbox%s marked failed, %u domain%s reaped, "
                  "%u files removed",
                  lost, lost == 1 ? "" : "es", gc.domains, gc.domains == 1 ? "" : "s", gc.files);
    if ((r = cdn_store_sandbox_list(s->o.store, NULL, 1u << CDN_SANDBOX_QUEUED, requeue, s, err)) <
        0)
        return r;
    s->tick_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->tick_wake < 0 || pthread_create(&s->ticker, NULL, ticker, s) != 0) {
        if (s->tick_wake >= 0)
            close(s->tick_wake);
        s->tick_wake = -1;
        return cdn_err_set(err, EAGAIN, "cannot start the scheduler's ticker");
    }
    if ((r = sched_pool_open(s, err)) < 0)
        return r;
    pthread_mutex_lock(&s->mu);
    sched_dispatch_locked(s);
    pthread_mutex_unlock(&s->mu);
    *out = TAKE_PTR(s);
    return 0;
}

void cdn_sched_free(struct cdn_sched *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    for (struct sbx *b = s->live; b; b = b->next)
        if (b->running && !b->stop) {
            b->stop = true;
            b->stop_reason = strdup("cordond stopped");
            b->cancel = 1;
            sched_wake(b->wake);
        }
    while (s->running)
        pthread_cond_wait(&s->cond, &s->mu);
    /* Queued ones stay QUEUED in the store: the next cordond starts them. */
    struct sbx *b = s->live;
    s->live = NULL;
    pthread_mutex_unlock(&s->mu);
    while (b) {
        struct sbx *next = b->next;
        sbx_free(b);
        b = next;
    }
    if (s->tick_wake >= 0) {
        sched_wake(s->tick_wake);
        pthread_join(s->ticker, NULL);
        close(s->tick_wake);
    }
    sched_pool_close(s);
    sched_hosts_close(s);
    for (size_t i = 0; i < s->n_tenants; i++)
        free(s->tenants[i].name);
    free(s->tenants);
    free(s->daemon_dir);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->review_mu);
    pthread_cond_destroy(&s->cond);
    free(s->state_dir);
    free(s->images_dir);
    free(s->policies_dir);
    free(s->default_policy);
    free(s->uri);
    free(s->accel);
    free(s);
}

void cdn_sched_freep(struct cdn_sched **s) {
    cdn_sched_free(*s);
    *s = NULL;
}
