/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_api share (internal). */
#pragma once

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdbool.h>

#include "api.h"
#include "logf.h"
#include "cordon.pb-c.h"

/* How much output a call may have queued for a client that does not read it. */
#define API_SEND_QUEUE_MAX (8u << 20)
/* A WriteFile's whole content, held until the last chunk. */
#define API_WRITE_MAX (256u << 20)

struct api_call;

enum api_tag_kind { TAG_NEW, TAG_RECV, TAG_WRITE, TAG_CLOSE, TAG_FINAL };
struct api_tag {
    struct api_call *c;
    enum api_tag_kind kind;
};

struct api_out {
    grpc_byte_buffer *bb;
    size_t len;
    struct api_out *next;
};

struct api_watch;

struct api_call {
    struct cdn_api *api;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    char method[96];
    char tenant[300];
    struct api_tag t_new, t_recv, t_write, t_close, t_final;
    grpc_byte_buffer *recv_buf;
    int cancelled_flag; /* from RECV_CLOSE_ON_SERVER */
    pthread_mutex_t mu;
    pthread_cond_t drained; /* a write completed */
    int refs;
    /* the send side, under mu */
    struct api_out *q, *q_tail;
    size_t q_bytes;
    bool writing, md_sent, finishing, finished, closed;
    grpc_status_code status;
    grpc_slice status_slice;
    bool has_status_slice;
    uint32_t retry_after_ms; /* sent as trailing metadata retry-after-ms when set */
    grpc_metadata retry_md[1];
    bool retry_md_set;
    grpc_metadata_array trailing;
    /* a client-streaming call's bytes (WriteFile) */
    uint8_t *in;
    size_t in_len, in_cap;
    char write_sid[40], write_path[4200];
    uint32_t write_mode;
    struct api_watch *watch;
};

struct cdn_api {
    struct cdn_api_opts o;
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t cq_thread, accept_thread, watch_thread;
    bool cq_running, accept_running, watch_running;
    int listen_fd, stop_pipe[2];
    bool tcp;
    /* unix peers: the fd gRPC serves each connection on, and its uid */
    pthread_mutex_t peers_mu;
    struct api_peer {
        int fd;
        unsigned uid;
    } * peers;
    size_t n_peers, cap_peers;
    /* WatchEvents calls */
    pthread_mutex_t watch_mu;
    pthread_cond_t watch_cond;
    bool watch_dirty, stopping;
    struct api_watch *watches;
};

#define api_log(a, ...) cdn_logf((a)->o.log, (a)->o.log_ud, __VA_ARGS__)

/* ---- calls (api_call.c): thread-safe ---- */
void api_call_ref(struct api_call *c);
void api_call_unref(struct api_call *c);
/* Queues a message; -EAGAIN (nothing queued) past API_SEND_QUEUE_MAX or after the call ended. */
int api_call_send(struct api_call *c, const ProtobufCMessage *msg);
/* The last message, then status OK, in one batch (the client has both at once). */
int api_call_send_last(struct api_call *c, const ProtobufCMessage *msg);
/* The same, waiting (up to timeout_ms) for room instead of refusing: backpressure for a sender
 * that can wait (a file read). */
int api_call_send_wait(struct api_call *c, const ProtobufCMessage *msg, int timeout_ms);
/* Ends the call with a status (after what is queued); later calls are ignored. */
void api_call_finish(struct api_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The status for an error from the layers below. */
grpc_status_code api_status_of(int rc);
void api_call_fail(struct api_call *c, int rc, const cdn_err *e);
bool api_call_gone(struct api_call *c);
/* fn(arg) on a detached thread of its own, holding a reference to c that fn drops
 * (api_call_unref) when done; -1 when no thread could start (c finished, arg still the caller's).
 */
int api_call_on_thread(struct api_call *c, void *(*fn)(void *), void *arg);
/* The caller's sandbox id (clear it after); when it is not one, the call has failed (NOT_FOUND). */
int api_call_sandbox(struct api_call *c, const char *id, struct cdn_store_sandbox *sb);
/* The sandbox's record as the call's answer (or the error reading it), and the call finished. */
void api_send_sandbox(struct api_call *c, const char *id);
/* A job for sandbox id, answered through ops with c as their ud (a reference held until done);
 * a refusal fails the call at once. */
void api_submit(struct api_call *c, const char *id, const struct cdn_job_spec *spec,
                const struct cdn_job_ops *ops);
/* Who made the call, as the audit trail names a decider: "tenant <identity>". */
void api_call_who(const struct api_call *c, char *out, size_t size);
/* ops->abandoned for a job whose ud is its call: the client went away. */
bool api_job_abandoned(void *ud);
/* Asks for the next message of a client-streaming call. */
void api_call_recv(struct api_call *c);
/* The cq thread's handling of a completed tag. */
void api_call_on_tag(struct api_tag *t, bool ok);
/* Decodes c's received message; NULL (the call failed with INVALID_ARGUMENT) when it is not one. */
ProtobufCMessage *api_call_decode(struct api_call *c, const ProtobufCMessageDescriptor *d);

/* ---- handlers (api_rpc.c, api_stream.c) ---- */
/* A unary or server-streaming call's request arrived (msg NULL for a client stream's end). */
void api_dispatch(struct api_call *c);
void api_write_chunk(struct api_call *c); /* WriteFile: a chunk arrived, or the stream ended */
void api_watch_add(struct api_call *c, const char *sandbox_id, uint64_t after);
void *api_watch_thread(void *arg);
void api_watch_notify(void *ud, const char *tenant);

/* ---- messages (api_msg.c) ---- */
Cordon__V1__Sandbox *api_msg_sandbox(const struct cdn_store_sandbox *sb);
void api_msg_sandbox_free(Cordon__V1__Sandbox *m);
/* The approval as stored (JSON), as a message; NULL when it cannot be read. */
Cordon__V1__Approval *api_msg_approval(const struct cdn_store_approval *a);
/* The stored approval id of tenant (NULL: any), or NULL. */
Cordon__V1__Approval *api_msg_approval_of(struct cdn_store *s, const char *tenant, const char *id);
void api_msg_approval_free(Cordon__V1__Approval *m);
