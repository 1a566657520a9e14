/* SPDX-License-Identifier: Apache-2.0 */
/* The RPCs that reach into a sandbox (Exec, ReadFile, WriteFile, GetDiff) as jobs for its worker,
 * whose callbacks turn into messages on the call; and WatchEvents, fed by the store's event
 * hook through a thread of its own. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cleanup.h"
#include "evidence.h"
#include "policy.h"

#define READ_WAIT_MS 30000
#define FILE_CHUNK (1u << 20)

/* ---- jobs' callbacks: the call is the job's ud, referenced until done ---- */

bool api_job_abandoned(void *ud) { return api_call_gone(ud); }

static int exec_data(void *ud, int fd, const uint8_t *p, size_t n) {
    struct api_call *c = ud;
    Cordon__V1__Output out = CORDON__V1__OUTPUT__INIT;
    out.fd = (uint32_t)fd;
    out.data = (ProtobufCBinaryData){.len = n, .data = (uint8_t *)p};
    Cordon__V1__ExecEvent ev = CORDON__V1__EXEC_EVENT__INIT;
    ev.event_case = CORDON__V1__EXEC_EVENT__EVENT_OUTPUT;
    ev.output = &out;
    if (api_call_send(c, &ev.base) == 0)
        return 0;
    if (!api_call_gone(c))
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                        "the client did not read the command's output fast enough (%u MiB "
                        "queued); the command was cancelled",
                        API_SEND_QUEUE_MAX >> 20);
    return -1;
}

static void exec_pending(void *ud, const char *approval_id) {
    struct api_call *c = ud;
    Cordon__V1__Approval *a = api_msg_approval_of(c->api->o.store, NULL, approval_id);
    if (!a)
        return;
    Cordon__V1__ApprovalPending p = CORDON__V1__APPROVAL_PENDING__INIT;
    p.approval = a;
    Cordon__V1__ExecEvent ev = CORDON__V1__EXEC_EVENT__INIT;
    ev.event_case = CORDON__V1__EXEC_EVENT__EVENT_APPROVAL_PENDING;
    ev.approval_pending = &p;
    api_call_send(c, &ev.base);
    api_msg_approval_free(a);
}

static void exec_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    if (rc == 0 && res->handle[0]) { /* started in the background */
        Cordon__V1__Detached d = CORDON__V1__DETACHED__INIT;
        d.handle = (char *)res->handle;
        Cordon__V1__ExecEvent ev = CORDON__V1__EXEC_EVENT__INIT;
        ev.event_case = CORDON__V1__EXEC_EVENT__EVENT_DETACHED;
        ev.detached = &d;
        if (api_call_send_last(c, &ev.base) < 0)
            api_call_finish(c, GRPC_STATUS_CANCELLED, "the call ended");
        api_call_unref(c);
        return;
    }
    if (rc == 0 || (rc == -ETIMEDOUT && res->exec.timed_out)) {
        Cordon__V1__Exit x = CORDON__V1__EXIT__INIT;
        x.exit_code = res->exec.exit_code;
        x.signal = res->exec.signal;
        x.timed_out = res->exec.timed_out;
        x.output_truncated = res->exec.output_truncated;
        x.duration_ms = res->exec.duration_ms;
        x.user_ms = res->exec.user_ms;
        x.sys_ms = res->exec.sys_ms;
        x.max_rss_kib = res->exec.max_rss_kib;
        Cordon__V1__ExecEvent ev = CORDON__V1__EXEC_EVENT__INIT;
        ev.event_case = CORDON__V1__EXEC_EVENT__EVENT_EXIT;
        ev.exit = &x;
        if (rc == 0 && api_call_send_last(c, &ev.base) == 0) { /* the exit and OK together */
            api_call_unref(c);
            return;
        }
        if (rc != 0)
            api_call_send(c, &ev.base);
    }
    if (rc == 0)
        api_call_finish(c, GRPC_STATUS_OK, NULL);
    else
        api_call_fail(c, rc, e);
    api_call_unref(c);
}

static void exec_notice(void *ud, const char *line) {
    Cordon__V1__Notice n = CORDON__V1__NOTICE__INIT;
    n.message = (char *)line;
    Cordon__V1__ExecEvent ev = CORDON__V1__EXEC_EVENT__INIT;
    ev.event_case = CORDON__V1__EXEC_EVENT__EVENT_NOTICE;
    ev.notice = &n;
    api_call_send(ud, &ev.base);
}

static const struct cdn_job_ops exec_ops = {.data = exec_data,
                                            .pending = exec_pending,
                                            .done = exec_done,
                                            .abandoned = api_job_abandoned,
                                            .notice = exec_notice};

void api_submit(struct api_call *c, const char *id, const struct cdn_job_spec *spec,
                const struct cdn_job_ops *ops) {
    cdn_err *e = NULL;
    api_call_ref(c);
    int r = cdn_sched_submit(c->api->o.sched, c->tenant, id, spec, ops, c, &e);
    if (r < 0) {
        api_call_unref(c);
        api_call_fail(c, r, e);
    }
    cdn_err_free(e);
}

void api_exec(struct api_call *c) {
    Cordon__V1__ExecRequest *q = (void *)api_call_decode(c, &cordon__v1__exec_request__descriptor);
    if (!q)
        return;
    struct cdn_job_spec spec = {.kind = CDN_JOB_EXEC,
                                .argv = (const char *const *)q->argv,
                                .argc = q->n_argv,
                                .env = (const char *const *)q->env,
                                .envc = q->n_env,
                                .cwd = q->cwd,
                                .timeout_s = q->timeout_seconds,
                                .stdin_data = q->stdin.data,
                                .stdin_len = q->stdin.len,
                                .approval_wait_s = q->approval_wait_seconds,
                                .no_approval_wait = q->no_approval_wait,
                                .detach = q->detach};
    for (size_t i = 0; i < q->n_env; i++)
        if (!strchr(q->env[i], '=') || q->env[i][0] == '=') {
            api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "env[%zu] '%.64s' is not KEY=VALUE", i,
                            q->env[i]);
            protobuf_c_message_free_unpacked(&q->base, NULL);
            return;
        }
    if (*q->cwd && q->cwd[0] != '/') {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "cwd must be absolute (got '%.200s')",
                        q->cwd);
        protobuf_c_message_free_unpacked(&q->base, NULL);
        return;
    }
    api_submit(c, q->sandbox_id, &spec, &exec_ops);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- files ---- */

static int read_data(void *ud, int fd, const uint8_t *p, size_t n) {
    (void)fd;
    struct api_call *c = ud;
    while (n > 0) {
        size_t k = n < FILE_CHUNK ? n : FILE_CHUNK;
        Cordon__V1__FileChunk ch = CORDON__V1__FILE_CHUNK__INIT;
        ch.data = (ProtobufCBinaryData){.len = k, .data = (uint8_t *)p};
        if (api_call_send_wait(c, &ch.base, READ_WAIT_MS) < 0) {
            if (!api_call_gone(c))
                api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                "the client did not read the file for %d s", READ_WAIT_MS / 1000);
            return -1;
        }
        p += k;
        n -= k;
    }
    return 0;
}

static void plain_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    (void)res;
    if (rc == 0)
        api_call_finish(c, GRPC_STATUS_OK, NULL);
    else
        api_call_fail(c, rc, e);
    api_call_unref(c);
}

static const struct cdn_job_ops read_ops = {
    .data = read_data, .done = plain_done, .abandoned = api_job_abandoned};

void api_read_file(struct api_call *c) {
    Cordon__V1__ReadFileRequest *q =
        (void *)api_call_decode(c, &cordon__v1__read_file_request__descriptor);
    if (!q)
        return;
    struct cdn_job_spec spec = {.kind = CDN_JOB_READ, .path = q->path, .max_bytes = q->max_bytes};
    api_submit(c, q->sandbox_id, &spec, &read_ops);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

static void write_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    if (rc == 0) {
        Cordon__V1__WriteFileResponse resp = CORDON__V1__WRITE_FILE_RESPONSE__INIT;
        resp.bytes = res->bytes;
        if (api_call_send(c, &resp.base) == 0)
            api_call_finish(c, GRPC_STATUS_OK, NULL);
    } else {
        api_call_fail(c, rc, e);
    }
    api_call_unref(c);
}

static const struct cdn_job_ops write_ops = {.done = write_done, .abandoned = api_job_abandoned};

/* Each chunk is appended (bounded); the end of the client's stream submits the write. */
void api_write_chunk(struct api_call *c) {
    if (!c->recv_buf) { /* the client's stream ended */
        if (!*c->write_sid) {
            api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "WriteFile got no chunk");
            return;
        }
        struct cdn_job_spec spec = {.kind = CDN_JOB_WRITE,
                                    .path = c->write_path,
                                    .mode = c->write_mode,
                                    .data = c->in,
                                    .len = c->in_len};
        api_submit(c, c->write_sid, &spec, &write_ops);
        return;
    }
    Cordon__V1__WriteFileChunk *q =
        (void *)api_call_decode(c, &cordon__v1__write_file_chunk__descriptor);
    if (!q)
        return;
    if (!*c->write_sid) {
        if (!*q->sandbox_id || !*q->path || strlen(q->sandbox_id) >= sizeof(c->write_sid) ||
            strlen(q->path) >= sizeof(c->write_path)) {
            api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                            "the first chunk names the sandbox_id and the path");
            protobuf_c_message_free_unpacked(&q->base, NULL);
            return;
        }
        if (q->mode > 07777) {
            api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "mode %o is not a file mode", q->mode);
            protobuf_c_message_free_unpacked(&q->base, NULL);
            return;
        }
        snprintf(c->write_sid, sizeof(c->write_sid), "%s", q->sandbox_id);
        snprintf(c->write_path, sizeof(c->write_path), "%s", q->path);
        c->write_mode = q->mode;
    }
    size_t n = q->data.len;
    if (c->in_len + n > API_WRITE_MAX) {
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "WriteFile takes at most %u MiB",
                        API_WRITE_MAX >> 20);
        protobuf_c_message_free_unpacked(&q->base, NULL);
        return;
    }
    if (c->in_len + n > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 65536;
        while (cap < c->in_len + n)
            cap *= 2;
        uint8_t *p = realloc(c->in, cap);
        if (!p) {
            api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            protobuf_c_message_free_unpacked(&q->base, NULL);
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    if (n)
        memcpy(c->in + c->in_len, q->data.data, n);
    c->in_len += n;
    protobuf_c_message_free_unpacked(&q->base, NULL);
    api_call_recv(c);
}

/* ---- the diff ---- */

static void diff_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    if (rc == 0) {
        Cordon__V1__Diff d = CORDON__V1__DIFF__INIT;
        d.base_commit = (char *)res->base;
        d.result_commit = (char *)res->result;
        d.patch = (ProtobufCBinaryData){.len = res->patch_len, .data = (uint8_t *)res->patch};
        d.files_changed = (uint32_t)res->stats.files;
        d.insertions = (uint32_t)res->stats.insertions;
        d.deletions = (uint32_t)res->stats.deletions;
        if (api_call_send(c, &d.base) == 0)
            api_call_finish(c, GRPC_STATUS_OK, NULL);
        else if (!api_call_gone(c))
            api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "the diff is over %u MiB: read diff.patch from the evidence",
                            API_SEND_QUEUE_MAX >> 20);
    } else {
        api_call_fail(c, rc, e);
    }
    api_call_unref(c);
}

static const struct cdn_job_ops diff_ops = {.done = diff_done, .abandoned = api_job_abandoned};

/* A stopped sandbox's diff is what its evidence holds. */
static void diff_from_evidence(struct api_call *c, const struct cdn_store_sandbox *sb) {
    char dir[4200];
    cdn_sched_evidence_dir(c->api->o.sched, sb->id, dir, sizeof(dir));
    json_t *m = NULL;
    cdn_evidence_load(dir, &m, NULL);
    json_t *stats = json_object_get(m, "diff");
    struct cdn_job_result res = {0};
    snprintf(res.base, sizeof(res.base), "%s", sb->base ? sb->base : "");
    snprintf(res.result, sizeof(res.result), "%s", sb->result ? sb->result : "");
    res.stats.files = (size_t)json_integer_value(json_object_get(stats, "files_changed"));
    res.stats.insertions = (size_t)json_integer_value(json_object_get(stats, "insertions"));
    res.stats.deletions = (size_t)json_integer_value(json_object_get(stats, "deletions"));
    json_decref(m);
    cdn_err *e = NULL;
    int r = cdn_sched_read_patch(dir, &res.patch, &res.patch_len, &e);
    api_call_ref(c);
    diff_done(c, r, e, &res);
    cdn_err_free(e);
    free(res.patch);
}

void api_get_diff(struct api_call *c) {
    Cordon__V1__GetDiffRequest *q =
        (void *)api_call_decode(c, &cordon__v1__get_diff_request__descriptor);
    if (!q)
        return;
    struct cdn_store_sandbox sb;
    int r = api_call_sandbox(c, q->sandbox_id, &sb); /* < 0: the call has failed */
    if (r >= 0 && (!sb.repo || !*sb.repo)) {
        api_call_finish(c, GRPC_STATUS_FAILED_PRECONDITION,
                        "sandbox %s has no repository: there is no diff", sb.id);
    } else if (r >= 0 && (sb.state == CDN_SANDBOX_STOPPED || sb.state == CDN_SANDBOX_FAILED)) {
        diff_from_evidence(c, &sb);
    } else if (r >= 0) {
        struct cdn_job_spec spec = {.kind = CDN_JOB_DIFF};
        api_submit(c, q->sandbox_id, &spec, &diff_ops);
    }
    if (r >= 0)
        cdn_store_sandbox_clear(&sb);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- UpdatePolicy ---- */

static void policy_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    if (rc == 0) {
        Cordon__V1__UpdatePolicyResponse u = CORDON__V1__UPDATE_POLICY_RESPONSE__INIT;
        u.policy_sha256 = (char *)res->policy_sha256;
        u.egress_rules = (uint32_t)res->egress_rules;
        if (api_call_send(c, &u.base) == 0)
            api_call_finish(c, GRPC_STATUS_OK, NULL);
    } else {
        api_call_fail(c, rc, e);
    }
    api_call_unref(c);
}

static const struct cdn_job_ops policy_ops = {.done = policy_done, .abandoned = api_job_abandoned};

void api_update_policy(struct api_call *c) {
    Cordon__V1__UpdatePolicyRequest *q =
        (void *)api_call_decode(c, &cordon__v1__update_policy_request__descriptor);
    if (!q)
        return;
    size_t len = strlen(q->policy_yaml);
    if (len == 0 || len > CDN_POLICY_MAX_BYTES) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "policy_yaml must be 1 to %u bytes",
                        CDN_POLICY_MAX_BYTES);
    } else {
        char by[320];
        api_call_who(c, by, sizeof(by));
        struct cdn_job_spec spec = {.kind = CDN_JOB_POLICY,
                                    .data = (const uint8_t *)q->policy_yaml,
                                    .len = len,
                                    .path = by};
        api_submit(c, q->sandbox_id, &spec, &policy_ops);
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- WatchEvents ---- */

struct api_watch {
    struct api_call *c;
    char sandbox[40]; /* "" for all of the tenant's */
    uint64_t last;
    struct api_watch *next;
};

void api_watch_add(struct api_call *c, const char *sandbox_id, uint64_t after) {
    struct api_watch *w = calloc(1, sizeof(*w));
    if (!w) {
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    api_call_ref(c);
    w->c = c;
    snprintf(w->sandbox, sizeof(w->sandbox), "%s", sandbox_id);
    w->last = after;
    struct cdn_api *a = c->api;
    pthread_mutex_lock(&a->watch_mu);
    w->next = a->watches;
    a->watches = w;
    a->watch_dirty = true; /* events after `after` may exist already */
    pthread_cond_broadcast(&a->watch_cond);
    pthread_mutex_unlock(&a->watch_mu);
}

void api_watch_events(struct api_call *c) {
    Cordon__V1__WatchEventsRequest *q =
        (void *)api_call_decode(c, &cordon__v1__watch_events_request__descriptor);
    if (!q)
        return;
    cdn_err *e = NULL;
    int r = 0;
    if (*q->sandbox_id) {
        struct cdn_store_sandbox sb;
        if ((r = cdn_store_sandbox_get(c->api->o.store, c->tenant, q->sandbox_id, &sb, &e)) >= 0)
            cdn_store_sandbox_clear(&sb);
    }
    uint64_t after = q->after_event_id;
    if (r >= 0 && !after)
        r = cdn_store_last_event_id(c->api->o.store, &after, &e);
    if (r < 0)
        api_call_fail(c, r, e);
    else if (strlen(q->sandbox_id) >= 40)
        api_call_finish(c, GRPC_STATUS_NOT_FOUND, "no sandbox %.40s", q->sandbox_id);
    else
        api_watch_add(c, q->sandbox_id, after);
    cdn_err_free(e);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

void api_watch_notify(void *ud, const char *tenant) {
    (void)tenant;
    struct cdn_api *a = ud;
    pthread_mutex_lock(&a->watch_mu);
    a->watch_dirty = true;
    pthread_cond_broadcast(&a->watch_cond);
    pthread_mutex_unlock(&a->watch_mu);
}

static int send_event(void *ud, const struct cdn_store_event *ev) {
    struct api_watch *w = ud;
    Cordon__V1__Event m = CORDON__V1__EVENT__INIT;
    m.id = ev->id;
    m.sandbox_id = (char *)ev->sandbox_id;
    m.unix_ms = ev->unix_ms;
    m.state = (Cordon__V1__SandboxState)ev->state;
    m.message = (char *)(ev->message ? ev->message : "");
    if (api_call_send(w->c, &m.base) < 0) {
        if (!api_call_gone(w->c))
            api_call_finish(w->c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "the client did not read its events; resume after event %llu",
                            (unsigned long long)w->last);
        return -1;
    }
    w->last = ev->id;
    return 0;
}

void *api_watch_thread(void *arg) {
    struct cdn_api *a = arg;
    for (;;) {
        pthread_mutex_lock(&a->watch_mu);
        while (!a->watch_dirty && !a->stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1; /* also to notice watchers whose client went away */
            pthread_cond_timedwait(&a->watch_cond, &a->watch_mu, &until);
            break;
        }
        bool stopping = a->stopping;
        a->watch_dirty = false;
        /* Gone calls leave the list. */
        struct api_watch *gone = NULL;
        for (struct api_watch **pp = &a->watches; *pp;) {
            struct api_watch *w = *pp;
            if (stopping || api_call_gone(w->c)) {
                *pp = w->next;
                w->next = gone;
                gone = w;
            } else {
                pp = &w->next;
            }
        }
        struct api_watch *list = a->watches;
        pthread_mutex_unlock(&a->watch_mu);
        for (struct api_watch *w = gone, *next; w; w = next) {
            next = w->next;
            api_call_finish(w->c, stopping ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_CANCELLED,
                            stopping ? "cordond is stopping" : "cancelled");
            api_call_unref(w->c);
            free(w);
        }
        if (stopping)
            return NULL;
        /* Only this thread removes watches, so the list stays valid while it walks it. */
        for (struct api_watch *w = list; w; w = w->next)
            cdn_store_events(a->o.store, w->c->tenant, *w->sandbox ? w->sandbox : NULL, w->last,
                             send_event, w, NULL);
    }
}
