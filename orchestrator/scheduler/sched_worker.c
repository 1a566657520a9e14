/* SPDX-License-Identifier: Apache-2.0 */
/* A sandbox's worker thread: it boots the sandbox's session, then serves its jobs until it is
 * stopped, its time is up or its VM dies; it takes the result and closes the session on every
 * path. Only this thread touches the session. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "approval.h"
#include "cleanup.h"
#include "fsutil.h"
#include "redact.h"
#include "evidence.h"
#include "sched_internal.h"

#define SLICE_MS 100
#define FILE_TIMEOUT_MS (5 * 60 * 1000)
#define READ_CAP (64ull << 20) /* ReadFile's cap when the request gives none */
#define PATCH_MAX (60u << 20)  /* a diff in one message (the API's is 64 MiB) */

void sched_set_state(struct worker *w, enum cdn_sandbox_state to, const char *error) {
    cdn_err *e = NULL;
    if (cdn_store_sandbox_set_state(w->s->o.store, w->b->tenant, w->b->id, to, error, &e) < 0)
        sched_log(w->s, "sandbox %s: recording %s: %s", w->b->id, cdn_sandbox_state_name(to),
                  cdn_err_msg(e));
    cdn_err_free(e);
    pthread_mutex_lock(&w->s->mu);
    w->b->state = to;
    pthread_mutex_unlock(&w->s->mu);
}

void sched_save_evidence(struct worker *w) {
    cdn_err *e = NULL;
    cdn_evidence_save(cdn_session_evidence(w->sess), &e);
    cdn_err_free(e);
}

static char *argv_json(const struct job *j) {
    json_t *a = json_array();
    for (size_t i = 0; i < j->spec.argc; i++)
        json_array_append_new(a, json_string(j->spec.argv[i]));
    char *out = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return out;
}

static void cmd_record_end(struct worker *w, struct job *j, const char *state, int code, int sig) {
    if (j->cmd_id)
        cdn_store_command_end(w->s->o.store, j->cmd_id, state, code, sig, NULL);
}

/* The VM, booted now (a sandbox created with defer_boot: for the job j, which gets its notices
 * and, on failure, the error; the sandbox then fails). */
int sched_boot(struct worker *w, struct job *j, cdn_err **e) {
    w->b->booting_for = j;
    struct cdn_warm *warm = TAKE_PTR(w->b->warm);
    if (warm && !cdn_warm_alive(warm)) {
        sched_log(w->s, "sandbox %s: its warm VM had died; booting one", w->b->id);
        cdn_warm_free(TAKE_PTR(warm));
    }
    if (warm) {
        cdn_session_set_warm(w->sess, warm);
        sched_log(w->s, "sandbox %s: started from the warm pool", w->b->id);
    } else if ((warm = sched_pool_clone(w->s, w->b))) {
        /* None ready: a clone of a free template still beats a boot. */
        cdn_session_set_warm(w->sess, warm);
        sched_log(w->s, "sandbox %s: started from a clone of a warm pool template", w->b->id);
    }
    int r = cdn_session_boot(w->sess, e);
    w->b->booting_for = NULL;
    const struct cdn_task_result *info = cdn_session_info(w->sess);
    if (r >= 0 || info->accel)
        cdn_store_sandbox_update(w->s->o.store, w->b->id, NULL, NULL, info->accel, info->transport,
                                 NULL);
    if (r >= 0)
        w->booted = true;
    return r;
}

/* For a deferred sandbox's first job: 0 once booted, else -EBADFD with *e for the job (the
 * sandbox fails after it). */
static int need_vm(struct worker *w, struct job *j, cdn_err **e) {
    if (w->booted)
        return 0;
    if (!w->fatal) {
        cdn_err *be = NULL;
        int r = sched_boot(w, j, &be);
        if (r >= 0)
            return 0;
        cdn_err_set(&w->fatal, -r, "%s%s", r == -ETIMEDOUT ? "boot deadline passed: " : "",
                    cdn_err_msg(be));
        cdn_err_free(be);
    }
    return cdn_err_set(e, EBADFD, "sandbox %s failed: %s", w->b->id, cdn_err_msg(w->fatal));
}

/* ---- commands ---- */

static int on_output(void *ud, int fd, const uint8_t *p, size_t n) {
    struct job *j = ud;
    return j->ops->data ? j->ops->data(j->ud, fd, p, n) : 0;
}

static void start_command(struct worker *w, struct job *j) {
    const struct cdn_task_spec *t = &w->b->spec;
    struct cdn_exec_spec x = {.argv = j->spec.argv,
                              .argc = j->spec.argc,
                              .env = j->spec.env,
                              .envc = j->spec.envc,
                              .cwd = j->spec.cwd ? j->spec.cwd : cdn_session_cwd(w->sess),
                              .timeout_ms = t->timeout_ms,
                              .stdin_pipe = j->spec.stdin_len > 0,
                              .output_limit = t->output_limit,
                              .rlimits = t->rlimits,
                              .n_rlimits = t->n_rlimits};
    if (j->spec.detach)
        x.timeout_ms = 0; /* a background process lives as long as its sandbox, unless asked */
    if (j->spec.timeout_s) {
        uint32_t want = j->spec.timeout_s * 1000u;
        if (t->timeout_ms && want > t->timeout_ms) {
            cmd_record_end(w, j, "refused", -1, 0);
            job_fail(j, EDQUOT, "timeout_seconds %u is over the policy's limit of %u",
                     j->spec.timeout_s, t->timeout_ms / 1000);
            return;
        }
        x.timeout_ms = want;
    }
    cdn_err *e = NULL;
    int r = need_vm(w, j, &e);
    if (r >= 0)
        r = cdn_session_cmd_start(w->sess, &x, on_output, j, &j->cmd, &e);
    if (r >= 0 && j->spec.stdin_len)
        r = cdn_session_cmd_stdin(w->sess, j->cmd, j->spec.stdin_data, j->spec.stdin_len, &e);
    if (r >= 0 && j->spec.detach)
        r = sched_proc_detach(w, j, &e);
    if (r < 0) {
        if (j->cmd) {
            struct cdn_exec_result ignored;
            cdn_session_cmd_finish(w->sess, j->cmd, 0, &ignored, NULL);
        }
        cmd_record_end(w, j, "failed", -1, 0);
        struct cdn_job_result res = {0};
        j->ops->done(j->ud, r, e, &res);
        cdn_err_free(e);
        job_free(j);
        return;
    }
    j->next = w->running;
    w->running = j;
}

static void finish_command(struct worker *w, struct job *j, int timeout_ms) {
    struct cdn_job_result res = {0};
    cdn_err *e = NULL;
    int r = cdn_session_cmd_finish(w->sess, j->cmd, timeout_ms, &res.exec, &e);
    j->cmd = NULL;
    if (r >= 0 && res.exec.timed_out)
        r = cdn_err_set(&e, ETIMEDOUT, "the command ran past its %u s timeout",
                        j->spec.timeout_s ? j->spec.timeout_s : w->b->spec.timeout_ms / 1000);
    cmd_record_end(w, j,
                   r >= 0            ? "exited"
                   : r == -ETIMEDOUT ? "timed_out"
                   : j->killed       ? "cancelled"
                                     : "failed",
                   res.exec.exit_code, res.exec.signal);
    j->ops->done(j->ud, r, e, &res); /* the session saved the evidence as the command ended */
    cdn_err_free(e);
    job_free(j);
}

/* The policy or a person said no (r, e): recorded, answered, its decision saved; j and e go. */
static void command_refused(struct worker *w, struct job *j, int r, cdn_err *e) {
    cmd_record_end(w, j, "denied", -1, 0);
    struct cdn_job_result res = {0};
    j->ops->done(j->ud, r, e, &res);
    cdn_err_free(e);
    job_free(j);
    sched_save_evidence(w);
}

/* A new command: the policy first. */
static void admit_command(struct worker *w, struct job *j) {
    _cleanup_free_ char *aj = argv_json(j);
    cdn_store_command_begin(w->s->o.store, w->b->id, aj ? aj : "[]", &j->cmd_id, NULL);
    cdn_err *e = NULL;
    int r = cdn_gate_check(w->b->policy, cdn_session_evidence(w->sess), j->spec.argv, j->spec.argc,
                           j->approval, &j->pending, &e);
    if (r == 1) { /* the request, where deciders find it */
        const json_t *req = cdn_gate_pending_request(j->pending);
        _cleanup_free_ char *argv = json_dumps(json_object_get(req, "argv"), JSON_COMPACT);
        _cleanup_free_ char *parts = json_dumps(json_object_get(req, "parts"), JSON_COMPACT);
        struct cdn_store_approval a = {
            .tenant = w->b->tenant, .argv_json = argv, .parts_json = parts};
        snprintf(a.id, sizeof(a.id), "%s", j->approval);
        snprintf(a.sandbox, sizeof(a.sandbox), "%s", w->b->id);
        if (!argv || !parts)
            r = cdn_err_set(&e, ENOMEM, "out of memory");
        else
            r = cdn_store_approval_add(w->s->o.store, &a, &e);
        if (r < 0) { /* nobody could decide it: the command does not run */
            cdn_gate_settle(j->pending, cdn_session_evidence(w->sess), j->approval,
                            CDN_APPROVAL_EXPIRED, "nobody (the request could not be recorded)",
                            NULL);
            j->pending = NULL;
        } else {
            r = 1;
        }
    }
    if (r < 0) {
        command_refused(w, j, r, e);
        return;
    }
    if (r == 0) {
        start_command(w, j);
        return;
    }
    j->waiting_since_ms = sched_now_ms();
    j->next = w->waiting;
    w->waiting = j;
    if (j->ops->pending)
        j->ops->pending(j->ud, j->approval);
}

static uint32_t approval_wait_s(const struct worker *w, const struct job *j) {
    uint32_t cap = w->s->o.approval_timeout_s;
    return j->spec.approval_wait_s && j->spec.approval_wait_s < cap ? j->spec.approval_wait_s : cap;
}

/* The request's status in the store, and who decided it (*by: the caller's). */
static enum cdn_approval_status request_status(struct worker *w, const struct job *j, char **by) {
    struct cdn_store_approval a;
    if (cdn_store_approval_get(w->s->o.store, NULL, j->approval, &a, NULL) < 0)
        return CDN_APPROVAL_PENDING; /* unreadable for now: asked again at the next turn */
    enum cdn_approval_status st = a.status;
    free(*by);
    *by = TAKE_PTR(a.decided_by);
    cdn_store_approval_clear(&a);
    return st;
}

/* Nobody decided it (why): expired, unless a decision landed in the same instant. */
static enum cdn_approval_status expire(struct worker *w, const struct job *j, const char *why,
                                       char **by) {
    if (cdn_store_approval_decide(w->s->o.store, NULL, j->approval, CDN_APPROVAL_EXPIRED, why,
                                  NULL) < 0)
        return request_status(w, j, by);
    free(*by);
    *by = strdup(why);
    return CDN_APPROVAL_EXPIRED;
}

/* Waiting commands: decided in the store, timed out, or abandoned. */
static void check_waiting(struct worker *w) {
    for (struct job **pp = &w->waiting; *pp;) {
        struct job *j = *pp;
        _cleanup_free_ char *by = NULL;
        enum cdn_approval_status st = request_status(w, j, &by);
        if (st == CDN_APPROVAL_PENDING && j->ops->abandoned && j->ops->abandoned(j->ud))
            st = expire(w, j, "nobody (the client went away)", &by);
        else if (st == CDN_APPROVAL_PENDING && j->spec.no_approval_wait)
            st = expire(w, j, "nobody (the request allowed no wait)", &by);
        else if (st == CDN_APPROVAL_PENDING &&
                 sched_now_ms() - j->waiting_since_ms >= (int64_t)approval_wait_s(w, j) * 1000)
            st = expire(w, j, "nobody (the approval timed out)", &by);
        if (st == CDN_APPROVAL_PENDING) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->next = NULL;
        cdn_err *e = NULL;
        int r = cdn_gate_settle(j->pending, cdn_session_evidence(w->sess), j->approval, st,
                                by ? by : "nobody", &e);
        j->pending = NULL;
        if (r < 0) {
            command_refused(w, j, r, e);
            continue;
        }
        start_command(w, j);
    }
}

static void check_running(struct worker *w) {
    for (struct job **pp = &w->running; *pp;) {
        struct job *j = *pp;
        if (!j->killed && j->ops->abandoned && j->ops->abandoned(j->ud)) {
            j->killed = true;
            cdn_session_cmd_signal(w->sess, j->cmd, SIGKILL, NULL);
        }
        if (!cdn_session_cmd_done(w->sess, j->cmd)) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        finish_command(w, j, 1000);
    }
}

/* ---- files and the diff (run on the spot: other commands' output keeps flowing) ---- */

/* ReadFile's bytes go to the caller redacted of the sandbox's secrets, like command output. */
struct read_ctx {
    struct job *j;
    const struct cdn_redactor *r;
    struct cdn_redact_stream st;
};

static int read_clean(void *ud, const uint8_t *p, size_t n) {
    struct job *j = ud;
    return j->ops->data ? j->ops->data(j->ud, 0, p, n) : 0;
}

static int read_sink(void *ud, const uint8_t *p, size_t n) {
    struct read_ctx *x = ud;
    return cdn_redact_feed(x->r, &x->st, p, n, false, read_clean, x->j);
}

/* Names and link targets leave the sandbox like file bytes: redacted of its secrets. */
static int redact_text(const struct cdn_redactor *r, char **s) {
    if (!*s)
        return 0;
    size_t n;
    char *clean = cdn_redact(r, *s, strlen(*s), &n);
    if (!clean)
        return -ENOMEM;
    free(*s);
    *s = clean;
    return 0;
}

static int redact_listing(const struct cdn_redactor *r, struct cdn_dir_listing *l, cdn_err **e) {
    if (cdn_redactor_empty(r))
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (redact_text(r, &l->entries[i].name) < 0 ||
            redact_text(r, &l->entries[i].link_target) < 0)
            return cdn_err_set(e, ENOMEM, "out of memory");
    return 0;
}

int cdn_sched_read_patch(const char *dir, char **out, size_t *len, cdn_err **err) {
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/diff.patch", dir) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    if (access(path, F_OK) < 0) { /* no change taken yet */
        *out = strdup("");
        *len = 0;
        return *out ? 0 : cdn_err_set(err, ENOMEM, "out of memory");
    }
    int r = cdn_read_file(path, PATCH_MAX, out, len, err);
    return r == -EFBIG ? cdn_err_prefix(err, "the patch is too large for one message; it is in "
                                             "the evidence folder")
                       : r;
}

/* UpdatePolicy: the given policy's network.egress becomes the sandbox's egress rules. */
static int update_policy(struct worker *w, struct job *j, struct cdn_job_result *res, cdn_err **e) {
    struct cdn_policy *p = NULL;
    int r = cdn_policy_parse("UpdatePolicy", (const char *)j->spec.data, j->spec.len, &p, e);
    if (r < 0)
        return r;
    cdn_sha256_hex(j->spec.data ? (const void *)j->spec.data : "", j->spec.len, res->policy_sha256);
    const struct cdn_egress_rules *rules = cdn_policy_egress(p);
    res->egress_rules = rules->n;
    r = cdn_session_set_egress(w->sess, rules, j->spec.path, res->policy_sha256, e);
    cdn_policy_free(p);
    if (r >= 0)
        sched_save_evidence(w);
    return r;
}

static void run_job_now(struct worker *w, struct job *j) {
    struct cdn_job_result res = {0};
    struct cdn_dir_listing *listing = NULL;
    cdn_err *e = NULL;
    bool no_vm = j->spec.kind == CDN_JOB_POLICY || j->spec.kind == CDN_JOB_NOTE ||
                 (w->paused && j->spec.kind == CDN_JOB_DIFF);
    int r = no_vm ? 0 : need_vm(w, j, &e);
    struct cdn_channel *ch = cdn_session_channel(w->sess);
    switch (r < 0 ? -1 : (int)j->spec.kind) {
    case -1: break;
    case CDN_JOB_WRITE:
        r = cdn_channel_file_write(ch, j->spec.path, j->spec.mode ? j->spec.mode : 0644,
                                   j->spec.data, j->spec.len, FILE_TIMEOUT_MS, &e);
        res.bytes = j->spec.len;
        if (r >= 0) { /* what entered the sandbox from outside, on its audit trail */
            char sha[65];
            cdn_sha256_hex(j->spec.data ? (const void *)j->spec.data : "", j->spec.len, sha);
            cdn_evidence_event(cdn_session_evidence(w->sess), "file.written",
                               json_pack("{s:s, s:I, s:s}", "path", j->spec.path, "bytes",
                                         (json_int_t)j->spec.len, "sha256", sha));
        }
        break;
    case CDN_JOB_READ: {
        struct read_ctx x = {.j = j, .r = cdn_session_redactor(w->sess)};
        r = cdn_channel_file_read(ch, j->spec.path,
                                  j->spec.max_bytes ? j->spec.max_bytes : READ_CAP, read_sink, &x,
                                  FILE_TIMEOUT_MS, &e);
        if (r >= 0)
            cdn_redact_feed(x.r, &x.st, NULL, 0, true, read_clean, j);
        cdn_redact_stream_clear(&x.st);
        break;
    }
    case CDN_JOB_LIST:
        r = cdn_channel_list_dir(ch, j->spec.path, j->spec.max_entries, FILE_TIMEOUT_MS, &listing,
                                 &e);
        if (r >= 0)
            r = redact_listing(cdn_session_redactor(w->sess), listing, &e);
        res.listing = listing;
        break;
    case CDN_JOB_DIFF: {
        const struct cdn_task_result *info = cdn_session_info(w->sess);
        if (!info->has_repo) {
            r = cdn_err_set(&e, EBADFD, "sandbox %s has no repository", w->b->id);
            break;
        }
        /* Paused: its result was taken when it paused. */
        if (!w->paused)
            r = cdn_session_take_result(w->sess, "the sandbox's commands so far", &e);
        if (r >= 0) {
            snprintf(res.base, sizeof(res.base), "%s", info->base);
            snprintf(res.result, sizeof(res.result), "%s", info->result);
            res.stats = info->diff;
            cdn_store_sandbox_update(w->s->o.store, w->b->id, NULL, info->result, NULL, NULL, NULL);
            r = cdn_sched_read_patch(info->evidence, &res.patch, &res.patch_len, &e);
        }
        break;
    }
    case CDN_JOB_POLICY: r = update_policy(w, j, &res, &e); break;
    case CDN_JOB_NOTE: { /* a client's tool call: its fields, who asked */
        json_error_t je;
        json_t *f = json_loadb((const char *)j->spec.data, j->spec.len, 0, &je);
        if (!json_is_object(f)) {
            json_decref(f);
            r = cdn_err_set(&e, EINVAL, "the event's fields are not a JSON object");
            break;
        }
        json_object_set_new(f, "by", json_string(j->spec.path ? j->spec.path : "?"));
        cdn_evidence_event(cdn_session_evidence(w->sess), "tool.call", f);
        break;
    }
    default: r = cdn_err_set(&e, EINVAL, "unknown job");
    }
    j->ops->done(j->ud, r, e, &res);
    cdn_dir_listing_free(listing);
    free(res.patch);
    cdn_err_free(e);
    job_free(j);
}

/* ---- the loop ---- */

static struct job *take_queue(struct worker *w, bool *stop) {
    pthread_mutex_lock(&w->s->mu);
    struct job *q = w->b->queue;
    w->b->queue = w->b->queue_tail = NULL;
    *stop = w->b->stop;
    pthread_mutex_unlock(&w->s->mu);
    return q;
}

static void drain(int fd) {
    uint64_t v;
    while (read(fd, &v, sizeof(v)) > 0) {
    }
}

/* A deferred sandbox before its VM: only jobs and stops to wait for (1 once woken). */
static int wait_wake(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 ? 1 : 0;
}

/* Serves jobs until a stop; returns < 0 (with e) when the VM or its channel failed. */
static int serve(struct worker *w, cdn_err **e) {
    for (;;) {
        bool stop;
        struct job *q = take_queue(w, &stop);
        while (q) {
            struct job *j = q;
            q = q->next;
            j->next = NULL;
            if (stop)
                job_fail(j, ECANCELED, "sandbox %s is stopping", w->b->id);
            else if (j->spec.kind == CDN_JOB_KILL)
                sched_proc_kill(w, j);
            else if (j->spec.kind == CDN_JOB_PREVIEW_OPEN || j->spec.kind == CDN_JOB_PREVIEW_CLOSE)
                sched_preview_job(w, j);
            else if (j->spec.kind >= CDN_JOB_PAUSE && j->spec.kind <= CDN_JOB_EXTEND)
                sched_session_job(w, j);
            else if (w->paused && j->spec.kind != CDN_JOB_POLICY && j->spec.kind != CDN_JOB_DIFF &&
                     j->spec.kind != CDN_JOB_NOTE)
                job_fail(j, EBADFD, "sandbox %s is paused: resume it first (cordon resume %s)",
                         w->b->id, w->b->id);
            else if (j->spec.kind == CDN_JOB_EXEC)
                admit_command(w, j);
            else
                run_job_now(w, j);
        }
        if (stop)
            return 0;
        if (w->paused) { /* nothing runs; decisions wait for the resume */
            sched_session_tick(w);
        } else {
            check_waiting(w);
            check_running(w);
            sched_preview_relay(w);
        }
        if (w->fatal) {
            *e = TAKE_PTR(w->fatal);
            return -cdn_err_code(*e);
        }
        int r = w->booted && !w->paused ? cdn_session_poll(w->sess, w->b->wake, SLICE_MS, e)
                                        : wait_wake(w->b->wake, SLICE_MS);
        if (r == 1)
            drain(w->b->wake);
        else if (r == -EINTR) { /* the cancel flag: a stop is on its way */
            cdn_err_free(*e);
            *e = NULL;
            w->b->cancel = 0;
        } else if (r < 0)
            return r;
    }
}

void sched_end_commands(struct worker *w, const char *why, int wait_ms) {
    for (struct job *j = w->running, *next; j; j = next) {
        next = j->next;
        j->killed = true;
        cdn_session_cmd_signal(w->sess, j->cmd, SIGKILL, NULL);
        struct cdn_job_result res = {0};
        cdn_err *e = NULL;
        cdn_session_cmd_finish(w->sess, j->cmd, wait_ms, &res.exec, NULL);
        cmd_record_end(w, j, "cancelled", res.exec.exit_code, res.exec.signal);
        cdn_err_set(&e, ECANCELED, "sandbox %s %s", w->b->id, why);
        j->ops->done(j->ud, -ECANCELED, e, &res);
        cdn_err_free(e);
        job_free(j);
    }
    w->running = NULL;
    for (struct job *j = w->waiting, *next; j; j = next) {
        next = j->next;
        _cleanup_free_ char *by = NULL;
        enum cdn_approval_status st = expire(w, j, "nobody (the sandbox stopped)", &by);
        cdn_gate_settle(j->pending, cdn_session_evidence(w->sess), j->approval,
                        st == CDN_APPROVAL_PENDING ? CDN_APPROVAL_EXPIRED : st, by ? by : "nobody",
                        NULL);
        j->pending = NULL;
        cmd_record_end(w, j, "cancelled", -1, 0);
        job_fail(j, ECANCELED, "sandbox %s %s", w->b->id, why);
    }
    w->waiting = NULL;
}

/* Everything still in flight ends: commands killed, waiting ones expired, queued ones failed. */
static void end_all(struct worker *w, const char *why) {
    sched_end_commands(w, why, 2000);
    bool stop;
    for (struct job *q = take_queue(w, &stop), *next; q; q = next) {
        next = q->next;
        job_fail(q, ECANCELED, "sandbox %s %s", w->b->id, why);
    }
}

static void retire(struct worker *w) {
    struct cdn_sched *s = w->s;
    struct sbx *b = w->b;
    bool remove;
    pthread_mutex_lock(&s->mu);
    remove = b->remove;
    pthread_mutex_unlock(&s->mu);
    if (remove)
        sched_remove(s, b->tenant, b->id, NULL);
    pthread_mutex_lock(&s->mu);
    struct sbx **pp = &s->live;
    while (*pp && *pp != b)
        pp = &(*pp)->next;
    if (*pp)
        *pp = b->next;
    sched_release_locked(s, b);
    sched_dispatch_locked(s);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    sbx_free(b);
}

void *sched_worker(void *arg) {
    struct worker w = {.b = arg, .s = ((struct sbx *)arg)->sched};
    pthread_detach(pthread_self());
    cdn_store_sandbox_set_host(w.s->o.store, w.b->id,
                               w.b->spec.uri ? w.b->spec.uri : "qemu:///system", false, NULL);
    sched_set_state(&w, CDN_SANDBOX_BOOTING, NULL);
    cdn_err *e = NULL;
    int r = cdn_session_open(&w.b->spec, w.b->id, &w.sess, &e);
    if (r >= 0) {
        const struct cdn_task_result *info = cdn_session_info(w.sess);
        if (info->has_repo)
            cdn_store_sandbox_update(w.s->o.store, w.b->id, info->base, info->base, NULL, NULL,
                                     NULL);
        if (!w.b->defer_boot)
            r = sched_boot(&w, NULL, &e);
    }
    pthread_mutex_lock(&w.s->mu);
    bool stopped_early = w.b->stop;
    pthread_mutex_unlock(&w.s->mu);
    if (r < 0 && stopped_early)
        r = 0; /* interrupted by the stop itself */
    if (r < 0) {
        sched_host_suspect(w.s, w.b);
        pthread_mutex_lock(&w.s->mu);
        bool lost = w.b->host_lost;
        pthread_mutex_unlock(&w.s->mu);
        if (lost)
            cdn_store_sandbox_set_host(w.s->o.store, w.b->id, NULL, true, NULL);
        char msg[1200];
        snprintf(msg, sizeof(msg), "%s%s%s", lost ? "its host stopped answering: " : "",
                 r == -ETIMEDOUT ? "boot deadline passed: " : "", cdn_err_msg(e));
        sched_log(w.s, "sandbox %s failed: %s", w.b->id, msg);
        end_all(&w, r == -ETIMEDOUT ? "missed its boot deadline" : "failed to start");
        cdn_session_close(w.sess, msg, NULL);
        sched_set_state(&w, CDN_SANDBOX_FAILED, msg);
        cdn_err_free(e);
        retire(&w);
        return NULL;
    }
    cdn_err_free(e);
    e = NULL;
    if (!stopped_early) {
        sched_set_state(&w, CDN_SANDBOX_READY, NULL);
        r = serve(&w, &e);
    }
    /* Stopped, expired, or its VM died. */
    if (r < 0)
        sched_host_suspect(w.s, w.b); /* the VM failed: was it its host? */
    pthread_mutex_lock(&w.s->mu);
    const char *reason = w.b->stop_reason ? w.b->stop_reason : "stopped";
    bool host_lost = w.b->host_lost;
    pthread_mutex_unlock(&w.s->mu);
    char why[1200];
    if (r < 0)
        snprintf(why, sizeof(why), "%s%s: %s", host_lost ? "its host stopped answering: " : "",
                 w.booted ? "its VM failed" : "its VM did not boot", cdn_err_msg(e));
    else
        snprintf(why, sizeof(why), "%s", reason);
    /* Why it ends, on its audit trail (an expiry's reaping included). */
    cdn_evidence_event(cdn_session_evidence(w.sess), "sandbox.stopping",
                       json_pack("{s:s}", "reason", why));
    sched_preview_close_all(&w, "the sandbox stopped");
    bool has_vm = r >= 0 && w.booted && sched_session_unpause(&w);
    end_all(&w, r < 0 ? "failed" : "stopped");
    sched_set_state(&w, CDN_SANDBOX_STOPPING, why);
    w.b->cancel = 0;
    /* Its result (the workspace, the artifacts), when it has one: a result over its limits fails
     * the sandbox, the evidence up to then kept. */
    cdn_err *te = NULL;
    /* A lost host's guest is gone or unreachable: no result to take (its evidence stays). */
    if (has_vm && !host_lost && (cdn_session_info(w.sess)->has_repo || w.b->spec.n_artifacts)) {
        if (cdn_session_take_result(w.sess, "the sandbox's commands", &te) >= 0) {
            const struct cdn_task_result *info = cdn_session_info(w.sess);
            if (info->has_repo)
                cdn_store_sandbox_update(w.s->o.store, w.b->id, NULL, info->result, NULL, NULL,
                                         NULL);
        } else {
            r = -cdn_err_code(te);
            snprintf(why, sizeof(why), "taking its result: %s", cdn_err_msg(te));
            sched_log(w.s, "sandbox %s: %s", w.b->id, why);
        }
    }
    cdn_err_free(te);
    /* A result that changed the repository waits for a person (its policy's review). */
    bool gate = r >= 0 && !host_lost && sched_review_gates(&w);
    if (gate)
        sched_review_await(&w);
    if (host_lost)
        cdn_session_host_lost(w.sess);
    cdn_session_close(w.sess, r < 0 ? why : NULL, NULL);
    if (host_lost)
        cdn_store_sandbox_set_host(w.s->o.store, w.b->id, NULL, true, NULL);
    if (gate)
        snprintf(why + strlen(why), sizeof(why) - strlen(why), "; its result awaits review");
    sched_set_state(&w,
                    r < 0 || host_lost ? CDN_SANDBOX_FAILED
                    : gate             ? CDN_SANDBOX_AWAITING_REVIEW
                                       : CDN_SANDBOX_STOPPED,
                    why);
    cdn_err_free(e);
    retire(&w);
    return NULL;
}
