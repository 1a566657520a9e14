/* SPDX-License-Identifier: Apache-2.0 */
/* The session RPCs: Pause, Resume, Reset and Extend, each a job for the sandbox's worker (which
 * alone touches its VM), answered with the sandbox's record once done. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api_internal.h"

static void lifecycle_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    if (rc < 0)
        api_call_fail(c, rc, e);
    else
        api_send_sandbox(c, res->sandbox_id);
    api_call_unref(c);
}

static const struct cdn_job_ops lifecycle_ops = {.done = lifecycle_done};

/* A session RPC: its request decoded, its job submitted by the call's tenant. */
static void session_rpc(struct api_call *c, const ProtobufCMessageDescriptor *d,
                        enum cdn_job_kind kind) {
    ProtobufCMessage *m = api_call_decode(c, d);
    if (!m)
        return;
    struct cdn_job_spec spec = {.kind = kind};
    const char *id;
    if (kind == CDN_JOB_PAUSE) {
        id = ((Cordon__V1__PauseRequest *)m)->id;
        spec.to_disk = ((Cordon__V1__PauseRequest *)m)->to_disk;
    } else if (kind == CDN_JOB_EXTEND) {
        id = ((Cordon__V1__ExtendRequest *)m)->id;
        spec.ttl_s = ((Cordon__V1__ExtendRequest *)m)->ttl_seconds;
    } else { /* Resume and Reset carry the id alone */
        id = ((Cordon__V1__ResumeRequest *)m)->id;
    }
    char by[320];
    snprintf(by, sizeof(by), "tenant %s", c->tenant);
    spec.path = by; /* who asked, for the audit trail */
    if (kind == CDN_JOB_EXTEND && !spec.ttl_s) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "ttl_seconds must be at least 1");
    } else {
        api_log(c->api, "%s: %s sandbox %.40s", c->tenant, cdn_job_kind_name(kind), id);
        api_submit(c, id, &spec, &lifecycle_ops);
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

void api_pause(struct api_call *c) {
    session_rpc(c, &cordon__v1__pause_request__descriptor, CDN_JOB_PAUSE);
}
void api_resume(struct api_call *c) {
    session_rpc(c, &cordon__v1__resume_request__descriptor, CDN_JOB_RESUME);
}
void api_reset(struct api_call *c) {
    session_rpc(c, &cordon__v1__reset_request__descriptor, CDN_JOB_RESET);
}
void api_extend(struct api_call *c) {
    session_rpc(c, &cordon__v1__extend_request__descriptor, CDN_JOB_EXTEND);
}
