/* SPDX-License-Identifier: Apache-2.0 */
/* The unary RPCs over the store and the scheduler, and the table every call is dispatched by.
 * Each handler decodes its request, answers with a message and OK, or ends the call with the
 * status its error maps to. Stopping a sandbox takes its result and can take seconds: Cancel and
 * Delete run on a thread of their own, not on the completion queue's. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "approval.h"
#include "evidence.h"
#include "cleanup.h"

#define SEND_AND_FINISH(c, msg)                                                                    \
    do {                                                                                           \
        if (api_call_send_last((c), &(msg)->base) < 0)                                             \
            api_call_finish((c), GRPC_STATUS_CANCELLED, "the call ended");                         \
    } while (0)

void api_send_sandbox(struct api_call *c, const char *id) {
    struct cdn_store_sandbox sb;
    cdn_err *e = NULL;
    int r = cdn_store_sandbox_get(c->api->o.store, c->tenant, id, &sb, &e);
    if (r < 0) {
        api_call_fail(c, r, e);
        cdn_err_free(e);
        return;
    }
    Cordon__V1__Sandbox *m = api_msg_sandbox(&sb);
    cdn_store_sandbox_clear(&sb);
    if (!m) {
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    SEND_AND_FINISH(c, m);
    api_msg_sandbox_free(m);
}

static char *labels_json(Cordon__V1__CreateSandboxRequest__LabelsEntry **l, size_t n) {
    if (!n)
        return NULL;
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, l[i]->key, json_string(l[i]->value));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static void create_sandbox(struct api_call *c) {
    Cordon__V1__CreateSandboxRequest *q =
        (void *)api_call_decode(c, &cordon__v1__create_sandbox_request__descriptor);
    if (!q)
        return;
    for (size_t i = 0; i < q->n_labels; i++)
        if (!*q->labels[i]->key || strlen(q->labels[i]->key) > 63 ||
            strlen(q->labels[i]->value) > 255) {
            api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                            "label '%.64s': keys are 1-63 bytes, values at most 255",
                            q->labels[i]->key);
            protobuf_c_message_free_unpacked(&q->base, NULL);
            return;
        }
    _cleanup_free_ char *labels = labels_json(q->labels, q->n_labels);
    struct cdn_sched_create req = {
        .repo = q->repo,
        .ref = q->ref,
        .policy_text = q->policy_case == CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT
                           ? q->policy_text
                           : NULL,
        .policy_name = q->policy_case == CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_NAME
                           ? q->policy_name
                           : NULL,
        .image = q->image,
        .labels_json = labels,
        .ttl_s = q->ttl_seconds,
        .kernel_args = (const char *const *)q->kernel_args,
        .n_kernel_args = q->n_kernel_args,
        .artifacts = (const char *const *)q->artifacts,
        .n_artifacts = q->n_artifacts,
        .max_artifact_bytes = q->max_artifact_bytes,
        .boot_timeout_s = q->boot_timeout_seconds,
        .defer_boot = q->defer_boot,
        .priority = q->priority,
        .persist = q->persist,
        .owner = q->owner,
    };
    if (q->limits)
        req.limits =
            (struct cdn_sched_limits){.cpus = q->limits->cpus,
                                      .memory_mib = q->limits->memory_mib,
                                      .disk_mib = q->limits->disk_mib,
                                      .wall_seconds = q->limits->wall_seconds,
                                      .command_timeout_seconds = q->limits->command_timeout_seconds,
                                      .max_processes = q->limits->max_processes,
                                      .output_bytes = q->limits->output_bytes,
                                      .max_files_returned = q->limits->max_files_returned,
                                      .max_bytes_returned = q->limits->max_bytes_returned,
                                      .max_depth_returned = q->limits->max_depth_returned};
    struct cdn_store_sandbox sb;
    cdn_err *e = NULL;
    uint32_t retry_ms = 0;
    int r = cdn_sched_create(c->api->o.sched, c->tenant, &req, &sb, &retry_ms, &e);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    if (r < 0) {
        c->retry_after_ms = retry_ms;
        api_call_fail(c, r, e);
        cdn_err_free(e);
        return;
    }
    api_log(c->api, "%s created sandbox %s", c->tenant, sb.id);
    Cordon__V1__Sandbox *m = api_msg_sandbox(&sb);
    cdn_store_sandbox_clear(&sb);
    if (m)
        SEND_AND_FINISH(c, m);
    else
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    api_msg_sandbox_free(m);
}

static void get_sandbox(struct api_call *c) {
    Cordon__V1__GetSandboxRequest *q =
        (void *)api_call_decode(c, &cordon__v1__get_sandbox_request__descriptor);
    if (!q)
        return;
    api_send_sandbox(c, q->id);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

struct list_ctx {
    Cordon__V1__ListSandboxesRequest *q;
    Cordon__V1__ListSandboxesResponse resp;
    size_t cap;
};

static bool labels_match(const struct list_ctx *l, const char *labels) {
    if (!l->q->n_labels)
        return true;
    json_error_t je;
    json_t *o = labels ? json_loads(labels, 0, &je) : NULL;
    bool ok = true;
    for (size_t i = 0; ok && i < l->q->n_labels; i++) {
        const char *v = json_string_value(json_object_get(o, l->q->labels[i]->key));
        ok = v && strcmp(v, l->q->labels[i]->value) == 0;
    }
    json_decref(o);
    return ok;
}

static int list_one(void *ud, const struct cdn_store_sandbox *sb) {
    struct list_ctx *l = ud;
    if (!labels_match(l, sb->labels_json) || (l->q->sessions_only && !sb->persist))
        return 0;
    if (*l->q->owner &&
        (!sb->persist || strcmp(sb->owner ? sb->owner : sb->tenant, l->q->owner) != 0))
        return 0;
    if (l->resp.n_sandboxes == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        Cordon__V1__Sandbox **v = realloc(l->resp.sandboxes, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->resp.sandboxes = v;
        l->cap = cap;
    }
    Cordon__V1__Sandbox *m = api_msg_sandbox(sb);
    if (!m)
        return -ENOMEM;
    l->resp.sandboxes[l->resp.n_sandboxes++] = m;
    return 0;
}

static void list_sandboxes(struct api_call *c) {
    Cordon__V1__ListSandboxesRequest *q =
        (void *)api_call_decode(c, &cordon__v1__list_sandboxes_request__descriptor);
    if (!q)
        return;
    struct list_ctx l = {.q = q};
    cordon__v1__list_sandboxes_response__init(&l.resp);
    unsigned mask = 0;
    for (size_t i = 0; i < q->n_states; i++)
        if (q->states[i] > 0 && (int)q->states[i] <= (int)CDN_SANDBOX_AWAITING_REVIEW)
            mask |= 1u << q->states[i];
    cdn_err *e = NULL;
    int r = cdn_store_sandbox_list(c->api->o.store, c->tenant, mask, list_one, &l, &e);
    if (r < 0)
        api_call_fail(c, r, e);
    else
        SEND_AND_FINISH(c, &l.resp);
    cdn_err_free(e);
    for (size_t i = 0; i < l.resp.n_sandboxes; i++)
        api_msg_sandbox_free(l.resp.sandboxes[i]);
    free(l.resp.sandboxes);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

struct approval_list {
    Cordon__V1__ListApprovalsResponse resp;
    size_t cap;
};

static int add_approval(void *ud, const struct cdn_store_approval *a) {
    struct approval_list *l = ud;
    if (l->resp.n_approvals == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        Cordon__V1__Approval **n = realloc(l->resp.approvals, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        l->resp.approvals = n;
        l->cap = cap;
    }
    Cordon__V1__Approval *m = api_msg_approval(a);
    if (!m)
        return -ENOMEM;
    l->resp.approvals[l->resp.n_approvals++] = m;
    return 0;
}

static void list_approvals(struct api_call *c) {
    Cordon__V1__ListApprovalsRequest *q =
        (void *)api_call_decode(c, &cordon__v1__list_approvals_request__descriptor);
    if (!q)
        return;
    struct approval_list l = {.resp = CORDON__V1__LIST_APPROVALS_RESPONSE__INIT};
    cdn_err *e = NULL;
    struct cdn_store_sandbox sb;
    int r = 0;
    if (*q->sandbox_id) { /* an unknown sandbox is an error, a quiet one an empty list */
        r = cdn_store_sandbox_get(c->api->o.store, c->tenant, q->sandbox_id, &sb, &e);
        if (r >= 0)
            cdn_store_sandbox_clear(&sb);
    }
    if (r >= 0)
        r = cdn_store_approval_list(c->api->o.store, c->tenant,
                                    *q->sandbox_id ? q->sandbox_id : NULL, q->include_decided,
                                    add_approval, &l, &e);
    if (r == -ENOMEM && !e)
        cdn_err_set(&e, ENOMEM, "out of memory");
    if (r < 0)
        api_call_fail(c, r, e);
    else
        SEND_AND_FINISH(c, &l.resp);
    cdn_err_free(e);
    for (size_t i = 0; i < l.resp.n_approvals; i++)
        api_msg_approval_free(l.resp.approvals[i]);
    free(l.resp.approvals);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

static void decide(struct api_call *c) {
    Cordon__V1__DecideRequest *q =
        (void *)api_call_decode(c, &cordon__v1__decide_request__descriptor);
    if (!q)
        return;
    cdn_err *e = NULL;
    if (strlen(q->reason) > 200) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "reason is over 200 bytes");
        protobuf_c_message_free_unpacked(&q->base, NULL);
        return;
    }
    char by[512]; /* the decider (the tenant), then what it says of how it decided */
    snprintf(by, sizeof(by), "%s%s%s%s", c->tenant, *q->reason ? " (" : "", q->reason,
             *q->reason ? ")" : "");
    int r = cdn_sched_decide(c->api->o.sched, c->tenant, q->approval_id, q->approve, by, &e);
    if (r < 0) {
        api_call_fail(c, r, e);
    } else {
        api_log(c->api, "%s %s approval %s", c->tenant, q->approve ? "approved" : "denied",
                q->approval_id);
        Cordon__V1__Approval *m = api_msg_approval_of(c->api->o.store, c->tenant, q->approval_id);
        if (m)
            SEND_AND_FINISH(c, m);
        else
            api_call_finish(c, GRPC_STATUS_INTERNAL, "approval %s: cannot read it back",
                            q->approval_id);
        api_msg_approval_free(m);
    }
    cdn_err_free(e);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

static void get_evidence(struct api_call *c) {
    Cordon__V1__GetEvidenceRequest *q =
        (void *)api_call_decode(c, &cordon__v1__get_evidence_request__descriptor);
    if (!q)
        return;
    struct cdn_store_sandbox sb;
    if (api_call_sandbox(c, q->sandbox_id, &sb) >= 0) {
        cdn_store_sandbox_clear(&sb);
        char dir[4200];
        cdn_sched_evidence_dir(c->api->o.sched, q->sandbox_id, dir, sizeof(dir));
        json_t *m = NULL;
        cdn_evidence_load(dir, &m, NULL); /* the manifest and the journal since its save */
        _cleanup_free_ char *text = m ? json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(m);
        if (!text)
            api_call_finish(c, GRPC_STATUS_FAILED_PRECONDITION,
                            "sandbox %s has no evidence yet (it has not started)", q->sandbox_id);
        else {
            Cordon__V1__Evidence ev = CORDON__V1__EVIDENCE__INIT;
            ev.manifest_json = text;
            ev.evidence_dir = dir;
            SEND_AND_FINISH(c, &ev);
        }
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* Cancel and Delete: on their own thread. */
struct stop_req {
    struct api_call *c;
    char id[80];
    bool remove;
};

static void *stop_thread(void *arg) {
    struct stop_req *s = arg;
    struct api_call *c = s->c;
    cdn_err *e = NULL;
    int r = cdn_sched_stop(c->api->o.sched, c->tenant, s->id, s->remove, &e);
    if (r < 0) {
        api_call_fail(c, r, e);
    } else if (s->remove) {
        api_log(c->api, "%s deleted sandbox %s", c->tenant, s->id);
        Cordon__V1__DeleteResponse resp = CORDON__V1__DELETE_RESPONSE__INIT;
        SEND_AND_FINISH(c, &resp);
    } else {
        api_log(c->api, "%s cancelled sandbox %s", c->tenant, s->id);
        api_send_sandbox(c, s->id);
    }
    cdn_err_free(e);
    api_call_unref(c);
    free(s);
    return NULL;
}

static void stop_sandbox(struct api_call *c, bool remove) {
    const ProtobufCMessageDescriptor *d =
        remove ? &cordon__v1__delete_request__descriptor : &cordon__v1__cancel_request__descriptor;
    ProtobufCMessage *q = api_call_decode(c, d);
    if (!q)
        return;
    const char *id =
        remove ? ((Cordon__V1__DeleteRequest *)q)->id : ((Cordon__V1__CancelRequest *)q)->id;
    struct stop_req *s = calloc(1, sizeof(*s));
    if (!s || strlen(id) >= sizeof(s->id)) {
        api_call_finish(c, s ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_RESOURCE_EXHAUSTED,
                        "no sandbox %.80s", id);
        free(s);
        protobuf_c_message_free_unpacked(q, NULL);
        return;
    }
    s->c = c;
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->remove = remove;
    protobuf_c_message_free_unpacked(q, NULL);
    if (api_call_on_thread(c, stop_thread, s) < 0)
        free(s);
}

static void cancel_sandbox(struct api_call *c) { stop_sandbox(c, false); }
static void delete_sandbox(struct api_call *c) { stop_sandbox(c, true); }

void api_exec(struct api_call *c);
void api_read_file(struct api_call *c);
void api_list_dir(struct api_call *c);
void api_get_diff(struct api_call *c);
void api_update_policy(struct api_call *c);
void api_watch_events(struct api_call *c);
void api_pause(struct api_call *c);
void api_resume(struct api_call *c);
void api_reset(struct api_call *c);
void api_extend(struct api_call *c);
void api_list_processes(struct api_call *c);
void api_process_logs(struct api_call *c);
void api_kill_process(struct api_call *c);
void api_get_review(struct api_call *c);
void api_decide_review(struct api_call *c);
void api_open_preview(struct api_call *c);
void api_close_preview(struct api_call *c);
void api_record_tool_call(struct api_call *c);

static const struct {
    const char *name;
    void (*fn)(struct api_call *c);
} methods[] = {
    {"CreateSandbox", create_sandbox},
    {"GetSandbox", get_sandbox},
    {"ListSandboxes", list_sandboxes},
    {"Exec", api_exec},
    {"ReadFile", api_read_file},
    {"ListDir", api_list_dir},
    {"GetDiff", api_get_diff},
    {"UpdatePolicy", api_update_policy},
    {"GetEvidence", get_evidence},
    {"ListApprovals", list_approvals},
    {"Decide", decide},
    {"Cancel", cancel_sandbox},
    {"Delete", delete_sandbox},
    {"WatchEvents", api_watch_events},
    {"Pause", api_pause},
    {"Resume", api_resume},
    {"Reset", api_reset},
    {"Extend", api_extend},
    {"ListProcesses", api_list_processes},
    {"ProcessLogs", api_process_logs},
    {"KillProcess", api_kill_process},
    {"GetReview", api_get_review},
    {"DecideReview", api_decide_review},
    {"OpenPreview", api_open_preview},
    {"ClosePreview", api_close_preview},
    {"RecordToolCall", api_record_tool_call},
};

void api_dispatch(struct api_call *c) {
    static const char prefix[] = "/cordon.v1.Sandboxes/";
    if (strncmp(c->method, prefix, sizeof(prefix) - 1) == 0) {
        const char *name = c->method + sizeof(prefix) - 1;
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
            if (strcmp(name, methods[i].name) == 0) {
                methods[i].fn(c);
                return;
            }
    }
    api_call_finish(c, GRPC_STATUS_UNIMPLEMENTED, "cordond has no method %s", c->method);
}
