/* SPDX-License-Identifier: Apache-2.0 */
/* The review gate over the API: GetReview (the sandbox, the summary drawn from its evidence, its
 * patch) and DecideReview (approve or reject, with a comment; an approval may push or merge). Both
 * on a thread of their own: a manifest can be large, a push slow. The caller's identity is the
 * reviewer's. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cleanup.h"
#include "evidence.h"
#include "policy.h"

struct review_req {
    struct api_call *c;
    char id[80];
    bool decide, approve;
    char *comment;
};

static void get_review(struct api_call *c, const char *id) {
    struct cdn_store_sandbox rec;
    struct cdn_policy *p = NULL;
    cdn_err *e = NULL;
    int r = cdn_sched_review_get(c->api->o.sched, c->tenant, id, &rec, &p, &e);
    if (r < 0) {
        api_call_fail(c, r, e);
        cdn_err_free(e);
        return;
    }
    cdn_policy_free(p);
    char dir[4300];
    json_t *manifest = NULL;
    _cleanup_free_ char *patch = NULL;
    size_t patch_len = 0;
    cdn_sched_evidence_dir(c->api->o.sched, rec.id, dir, sizeof(dir));
    r = cdn_evidence_load(dir, &manifest, &e);
    if (r >= 0)
        r = cdn_sched_read_patch(dir, &patch, &patch_len, &e);
    json_t *summary = r >= 0 ? cdn_evidence_review_summary(manifest) : NULL;
    _cleanup_free_ char *text = summary ? json_dumps(summary, JSON_COMPACT) : NULL;
    Cordon__V1__Review m = CORDON__V1__REVIEW__INIT;
    m.sandbox = api_msg_sandbox(&rec);
    m.summary_json = text;
    m.patch = (ProtobufCBinaryData){.len = patch_len, .data = (uint8_t *)patch};
    if (r < 0)
        api_call_fail(c, r, e);
    else if (!text || !m.sandbox)
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else if (api_call_send_last(c, &m.base) < 0)
        api_call_finish(c, GRPC_STATUS_CANCELLED, "the call ended");
    api_msg_sandbox_free(m.sandbox);
    json_decref(summary);
    json_decref(manifest);
    cdn_err_free(e);
    cdn_store_sandbox_clear(&rec);
}

static void *review_thread(void *arg) {
    struct review_req *q = arg;
    struct api_call *c = q->c;
    if (!q->decide) {
        get_review(c, q->id);
    } else {
        cdn_err *e = NULL;
        int r = cdn_sched_review(c->api->o.sched, c->tenant, q->id, q->approve, q->comment, &e);
        if (r < 0) {
            api_call_fail(c, r, e);
        } else {
            api_log(c->api, "%s %s sandbox %s", c->tenant, q->approve ? "approved" : "rejected",
                    q->id);
            /* Its record, read as a reviewer may (an approver of another tenant included). */
            struct cdn_store_sandbox rec;
            struct cdn_policy *p = NULL;
            Cordon__V1__Sandbox *m = NULL;
            if (cdn_sched_review_get(c->api->o.sched, c->tenant, q->id, &rec, &p, NULL) >= 0) {
                m = api_msg_sandbox(&rec);
                cdn_policy_free(p);
                cdn_store_sandbox_clear(&rec);
            }
            if (!m || api_call_send_last(c, &m->base) < 0)
                api_call_finish(c, GRPC_STATUS_INTERNAL,
                                "the decision was recorded; reading it "
                                "back failed");
            api_msg_sandbox_free(m);
        }
        cdn_err_free(e);
    }
    api_call_unref(c);
    free(q->comment);
    free(q);
    return NULL;
}

static void start(struct api_call *c, const char *id, bool decide, bool approve,
                  const char *comment) {
    if (strlen(id) >= sizeof(((struct review_req *)0)->id)) {
        api_call_finish(c, GRPC_STATUS_NOT_FOUND, "no sandbox %.80s", id);
        return;
    }
    struct review_req *q = calloc(1, sizeof(*q));
    if (!q || (comment && !(q->comment = strdup(comment)))) {
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        free(q);
        return;
    }
    q->c = c;
    snprintf(q->id, sizeof(q->id), "%s", id);
    q->decide = decide;
    q->approve = approve;
    if (api_call_on_thread(c, review_thread, q) < 0) {
        free(q->comment);
        free(q);
    }
}

void api_get_review(struct api_call *c) {
    Cordon__V1__GetReviewRequest *q =
        (void *)api_call_decode(c, &cordon__v1__get_review_request__descriptor);
    if (!q)
        return;
    start(c, q->sandbox_id, false, false, NULL);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

void api_decide_review(struct api_call *c) {
    Cordon__V1__DecideReviewRequest *q =
        (void *)api_call_decode(c, &cordon__v1__decide_review_request__descriptor);
    if (!q)
        return;
    start(c, q->sandbox_id, true, q->approve, q->comment);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}
