/* SPDX-License-Identifier: Apache-2.0 */
/* The session RPCs: Pause, Resume, Reset and Extend, each a job for the sandbox's worker (which
 * alone touches its VM), answered with the sandbox's record once done. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
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
    api_call_who(c, by, sizeof(by));
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

/* ---- previews ---- */

static void preview_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    if (rc < 0) {
        api_call_fail(c, rc, e);
    } else {
        Cordon__V1__Preview m = CORDON__V1__PREVIEW__INIT;
        m.sandbox_id = (char *)res->sandbox_id;
        m.port = res->port;
        m.address = (char *)res->address;
        if (api_call_send_last(c, &m.base) < 0)
            api_call_finish(c, GRPC_STATUS_CANCELLED, "the call ended");
    }
    api_call_unref(c);
}

static const struct cdn_job_ops preview_ops = {.done = preview_done};

static void preview_rpc(struct api_call *c, const char *id, struct cdn_job_spec *spec,
                        uint32_t port, uint32_t host_port) {
    char by[320];
    api_call_who(c, by, sizeof(by));
    spec->path = by;
    if (port == 0 || port > 65535 || host_port > 65535)
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "ports are 1-65535");
    else
        api_submit(c, id, spec, &preview_ops);
}

void api_open_preview(struct api_call *c) {
    Cordon__V1__OpenPreviewRequest *q =
        (void *)api_call_decode(c, &cordon__v1__open_preview_request__descriptor);
    if (!q)
        return;
    struct cdn_job_spec spec = {.kind = CDN_JOB_PREVIEW_OPEN,
                                .port = (uint16_t)q->port,
                                .host_port = (uint16_t)q->host_port,
                                .unix_socket = q->unix_socket};
    preview_rpc(c, q->sandbox_id, &spec, q->port, q->host_port);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

void api_close_preview(struct api_call *c) {
    Cordon__V1__ClosePreviewRequest *q =
        (void *)api_call_decode(c, &cordon__v1__close_preview_request__descriptor);
    if (!q)
        return;
    struct cdn_job_spec spec = {.kind = CDN_JOB_PREVIEW_CLOSE, .port = (uint16_t)q->port};
    preview_rpc(c, q->sandbox_id, &spec, q->port, 0);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- a client's tool call, on the audit trail ---- */

static void note_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    (void)res;
    struct api_call *c = ud;
    Cordon__V1__RecordToolCallResponse m = CORDON__V1__RECORD_TOOL_CALL_RESPONSE__INIT;
    if (rc < 0)
        api_call_fail(c, rc, e);
    else if (api_call_send_last(c, &m.base) < 0)
        api_call_finish(c, GRPC_STATUS_CANCELLED, "the call ended");
    api_call_unref(c);
}

static const struct cdn_job_ops note_ops = {.done = note_done};

void api_record_tool_call(struct api_call *c) {
    Cordon__V1__RecordToolCallRequest *q =
        (void *)api_call_decode(c, &cordon__v1__record_tool_call_request__descriptor);
    if (!q)
        return;
    json_error_t je;
    json_t *args = strlen(q->arguments_json) <= (64u << 10)
                       ? json_loads(q->arguments_json, 0, &je)
                       : json_pack("{s:s}", "truncated", "over 64 KiB of arguments");
    if (!json_is_object(args) || !*q->tool || strlen(q->tool) > 128 || strlen(q->client) > 64) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                        "a tool call needs a tool (1-128 bytes), a client (at most 64) and "
                        "arguments_json that is a JSON object");
    } else {
        json_t *fields =
            json_pack("{s:s, s:s, s:O}", "client", q->client, "tool", q->tool, "arguments", args);
        char *text = json_dumps(fields, JSON_COMPACT);
        json_decref(fields);
        char by[320];
        api_call_who(c, by, sizeof(by));
        struct cdn_job_spec spec = {.kind = CDN_JOB_NOTE,
                                    .data = (const uint8_t *)text,
                                    .len = text ? strlen(text) : 0,
                                    .path = by};
        if (text)
            api_submit(c, q->sandbox_id, &spec, &note_ops);
        else
            api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        free(text);
    }
    json_decref(args);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}
