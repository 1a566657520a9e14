/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_client: calls to cordond on gRPC core. Each call runs its batches on the client's pluck
 * completion queue and waits for them in 100 ms steps, so a caller's cancel flag (Ctrl-C) is seen
 * promptly and turned into grpc_call_cancel.
 *
 * gRPC core's ownership rules, once: a received grpc_byte_buffer and the status details slice
 * belong to us (grpc_byte_buffer_destroy, grpc_slice_unref); metadata arrays are ours to destroy;
 * a call is ours until grpc_call_unref, which may come only after every batch on it completed. */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "cleanup.h"
#include "fsutil.h"

struct cdn_client {
    char *addr;
    grpc_channel *channel;
    grpc_completion_queue *cq;
    uint32_t retry_after_ms; /* the last refusal's hint */
};

char *cdn_read_pem(const char *path, cdn_err **err) {
    char *s = NULL;
    size_t n;
    if (cdn_read_file(path, 1u << 20, &s, &n, err) < 0)
        return NULL;
    if (!n) {
        free(s);
        cdn_err_set(err, EINVAL, "%s: not a PEM file (empty)", path);
        return NULL;
    }
    return s;
}

static grpc_channel_credentials *tls_credentials(const struct cdn_client_opts *o, cdn_err **err) {
    if (!o->tls_cert || !o->tls_key || !o->tls_ca) {
        cdn_err_set(err, EINVAL,
                    "%s is a TCP address: it needs a client certificate, its key and the CA "
                    "(--tls-cert, --tls-key, --tls-ca or CORDON_TLS_CERT/KEY/CA)",
                    o->addr);
        return NULL;
    }
    _cleanup_free_ char *cert = cdn_read_pem(o->tls_cert, err);
    _cleanup_free_ char *key = cert ? cdn_read_pem(o->tls_key, err) : NULL;
    _cleanup_free_ char *ca = key ? cdn_read_pem(o->tls_ca, err) : NULL;
    if (!ca)
        return NULL;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    grpc_channel_credentials *cr = grpc_ssl_credentials_create(ca, &pair, NULL, NULL);
    if (!cr)
        cdn_err_set(err, EINVAL, "TLS credentials from %s, %s, %s were refused", o->tls_cert,
                    o->tls_key, o->tls_ca);
    return cr;
}

int cdn_client_open(const struct cdn_client_opts *o, struct cdn_client **out, cdn_err **err) {
    const char *addr = o->addr && *o->addr ? o->addr : CDN_CLIENT_DEFAULT_ADDR;
    bool is_unix = addr[0] == '/' || strncmp(addr, "unix:", 5) == 0;
    struct cdn_client *c = calloc(1, sizeof(*c));
    if (!c)
        return cdn_err_set(err, ENOMEM, "out of memory");
    if (asprintf(&c->addr, "%s%s", addr[0] == '/' ? "unix:" : "", addr) < 0) {
        free(c);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    grpc_init();
    grpc_channel_credentials *cr =
        is_unix ? grpc_insecure_credentials_create() : tls_credentials(o, err);
    if (!cr) {
        cdn_client_free(c);
        return -EINVAL;
    }
    grpc_arg args[3] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)CDN_CLIENT_MAX_MESSAGE},
        /* a CLI is one client: no sharing of subchannels with other channels of this process */
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
         .value.integer = 1},
        {.type = GRPC_ARG_STRING,
         .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
         .value.string = (char *)o->tls_server_name},
    };
    grpc_channel_args ca = {.num_args = (!is_unix && o->tls_server_name) ? 3 : 2, .args = args};
    c->channel = grpc_channel_create(c->addr, cr, &ca);
    grpc_channel_credentials_release(cr);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    if (!c->channel || !c->cq) {
        cdn_client_free(c);
        return cdn_err_set(err, EINVAL, "cannot set up a channel to %s", addr);
    }
    *out = c;
    return 0;
}

void cdn_client_free(struct cdn_client *c) {
    if (!c)
        return;
    if (c->channel)
        grpc_channel_destroy(c->channel);
    if (c->cq) {
        grpc_completion_queue_shutdown(c->cq);
        grpc_completion_queue_destroy(c->cq);
    }
    free(c->addr);
    free(c);
    grpc_shutdown();
}

void cdn_client_freep(struct cdn_client **c) {
    cdn_client_free(*c);
    *c = NULL;
}

const char *cdn_client_addr(const struct cdn_client *c) { return c->addr; }

uint32_t cdn_client_retry_after_ms(const struct cdn_client *c) { return c->retry_after_ms; }

/* ---- one call ---- */

enum { TAG_START = 1, TAG_STATUS, TAG_RECV, TAG_SEND };

struct call {
    struct cdn_client *c;
    grpc_call *call;
    const volatile sig_atomic_t *cancel;
    bool cancelled; /* by us: the cancel flag, or on_msg */
    grpc_metadata_array md_in, md_trailing;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *first; /* the first answer, received with the request's batch */
    bool first_taken;
    int tags[5];
};

static void *tag_of(struct call *k, int t) { return &k->tags[t]; }

/* Waits for one batch; false when it did not succeed (the status says why). */
static bool wait_batch(struct call *k, int t) {
    for (;;) {
        gpr_timespec step =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_pluck(k->c->cq, tag_of(k, t), step, NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            return ev.success;
        if (ev.type != GRPC_QUEUE_TIMEOUT)
            return false;
        if (k->cancel && *k->cancel && !k->cancelled) {
            k->cancelled = true;
            grpc_call_cancel(k->call, NULL);
        }
    }
}

static bool start_batch(struct call *k, const grpc_op *ops, size_t n, int t) {
    return grpc_call_start_batch(k->call, ops, n, tag_of(k, t), NULL) == GRPC_CALL_OK;
}

static int call_begin(struct call *k, struct cdn_client *c, const char *method, int timeout_ms,
                      const volatile sig_atomic_t *cancel) {
    memset(k, 0, sizeof(*k));
    k->c = c;
    k->first_taken = true; /* until send_request asks for one */
    k->cancel = cancel;
    grpc_metadata_array_init(&k->md_in);
    grpc_metadata_array_init(&k->md_trailing);
    char path[128];
    snprintf(path, sizeof(path), "/cordon.v1.Sandboxes/%s", method);
    gpr_timespec deadline = timeout_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice m = grpc_slice_from_copied_string(path);
    k->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
                                       deadline, NULL);
    grpc_slice_unref(m);
    if (!k->call)
        return -ENOMEM;
    grpc_op st = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    st.data.recv_status_on_client.trailing_metadata = &k->md_trailing;
    st.data.recv_status_on_client.status = &k->status;
    st.data.recv_status_on_client.status_details = &k->details;
    return start_batch(k, &st, 1, TAG_STATUS) ? 0 : -EIO;
}

static int errno_of(grpc_status_code s) {
    switch (s) {
    case GRPC_STATUS_OK: return 0;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE: return EINVAL;
    case GRPC_STATUS_NOT_FOUND: return ENOENT;
    case GRPC_STATUS_PERMISSION_DENIED: return EPERM;
    case GRPC_STATUS_UNAUTHENTICATED: return EACCES;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return EDQUOT;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return ETIMEDOUT;
    case GRPC_STATUS_FAILED_PRECONDITION: return EBADFD;
    case GRPC_STATUS_ALREADY_EXISTS: return EEXIST;
    case GRPC_STATUS_ABORTED: return ECANCELED;
    case GRPC_STATUS_UNAVAILABLE: return ENOTCONN;
    case GRPC_STATUS_CANCELLED: return EINTR;
    case GRPC_STATUS_UNIMPLEMENTED: return ENOSYS;
    default: return EIO;
    }
}

static const char *status_name(grpc_status_code s) {
    static const char *names[] = {"OK",
                                  "CANCELLED",
                                  "UNKNOWN",
                                  "INVALID_ARGUMENT",
                                  "DEADLINE_EXCEEDED",
                                  "NOT_FOUND",
                                  "ALREADY_EXISTS",
                                  "PERMISSION_DENIED",
                                  "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION",
                                  "ABORTED",
                                  "OUT_OF_RANGE",
                                  "UNIMPLEMENTED",
                                  "INTERNAL",
                                  "UNAVAILABLE",
                                  "DATA_LOSS",
                                  "UNAUTHENTICATED"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "UNKNOWN";
}

/* Waits for the status, frees the call; rc (ours, e.g. from on_msg) wins over the status. */
static int call_end(struct call *k, int rc, cdn_err **err) {
    if (!wait_batch(k, TAG_STATUS) && rc == 0)
        rc = cdn_err_set(err, EIO, "%s: the call did not complete", k->c->addr);
    if (rc == 0 && k->cancel && *k->cancel)
        rc = cdn_err_set(err, EINTR, "interrupted");
    if (rc == 0 && k->status != GRPC_STATUS_OK) {
        size_t n = GRPC_SLICE_LENGTH(k->details);
        const char *d = (const char *)GRPC_SLICE_START_PTR(k->details);
        if (k->status == GRPC_STATUS_UNAVAILABLE)
            rc = cdn_err_set(err, ENOTCONN, "no cordond answers at %s (%.*s)", k->c->addr, (int)n,
                             d);
        else
            rc = cdn_err_set(err, errno_of(k->status), "%.*s (%s)", (int)n, d,
                             status_name(k->status));
        /* A refusal worth retrying says when (cordond's retry-after-ms). */
        for (size_t i = 0; k->status == GRPC_STATUS_RESOURCE_EXHAUSTED && i < k->md_trailing.count;
             i++) {
            const grpc_metadata *m = &k->md_trailing.metadata[i];
            char v[16] = "";
            size_t vn = GRPC_SLICE_LENGTH(m->value);
            if (!grpc_slice_str_cmp(m->key, "retry-after-ms") && vn && vn < sizeof(v)) {
                memcpy(v, GRPC_SLICE_START_PTR(m->value), vn);
                k->c->retry_after_ms = (uint32_t)strtoul(v, NULL, 10);
                rc = cdn_err_recode(err, EAGAIN);
            }
        }
    }
    if (k->first)
        grpc_byte_buffer_destroy(k->first);
    grpc_slice_unref(k->details);
    grpc_metadata_array_destroy(&k->md_in);
    grpc_metadata_array_destroy(&k->md_trailing);
    grpc_call_unref(k->call);
    return rc;
}

static grpc_byte_buffer *pack(const ProtobufCMessage *m) {
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static ProtobufCMessage *unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d) {
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

/* Sends the request and half-closes, and takes the first answer in the same batch (one wake-up
 * fewer); false when the call already failed. */
static bool send_request(struct call *k, const ProtobufCMessage *req) {
    grpc_byte_buffer *bb = pack(req);
    grpc_op ops[5] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
                      {.op = GRPC_OP_SEND_MESSAGE},
                      {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT},
                      {.op = GRPC_OP_RECV_INITIAL_METADATA},
                      {.op = GRPC_OP_RECV_MESSAGE}};
    ops[1].data.send_message.send_message = bb;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &k->md_in;
    ops[4].data.recv_message.recv_message = &k->first;
    k->first_taken = false;
    bool ok = start_batch(k, ops, 5, TAG_START) && wait_batch(k, TAG_START);
    grpc_byte_buffer_destroy(bb);
    return ok;
}

/* The next message: 1 (in *out), 0 at the stream's end, < 0 when it is not a message. */
static int recv_message(struct call *k, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                        cdn_err **err) {
    grpc_byte_buffer *bb = NULL;
    if (!k->first_taken) { /* the one that came with the request's batch */
        k->first_taken = true;
        bb = TAKE_PTR(k->first);
        if (!bb)
            return 0;
    } else {
        grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
        op.data.recv_message.recv_message = &bb;
        if (!start_batch(k, &op, 1, TAG_RECV) || !wait_batch(k, TAG_RECV) || !bb)
            return 0; /* the stream ended (the status says how) */
    }
    *out = unpack(bb, d);
    grpc_byte_buffer_destroy(bb);
    if (!*out) {
        grpc_call_cancel(k->call, NULL);
        k->cancelled = true;
        return cdn_err_set(err, EPROTO, "%s: a %s that does not decode", k->c->addr, d->name);
    }
    return 1;
}

/* call_end for a call answered by one message: none is an error, and on error none is kept. */
static int call_end_with_answer(struct call *k, int rc, const char *method, ProtobufCMessage **resp,
                                cdn_err **err) {
    rc = call_end(k, rc < 0 ? rc : 0, err);
    if (rc == 0 && !*resp)
        rc = cdn_err_set(err, EPROTO, "%s: %s answered without a message", k->c->addr, method);
    if (rc < 0 && *resp) {
        protobuf_c_message_free_unpacked(*resp, NULL);
        *resp = NULL;
    }
    return rc;
}

int cdn_client_call(struct cdn_client *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                    int timeout_ms, cdn_err **err) {
    struct call k;
    *resp = NULL;
    if (call_begin(&k, c, method, timeout_ms, NULL) < 0)
        return cdn_err_set(err, EIO, "%s: cannot start a call", c->addr);
    int rc = 0;
    if (send_request(&k, req))
        rc = recv_message(&k, resp_desc, resp, err);
    return call_end_with_answer(&k, rc, method, resp, err);
}

int cdn_client_stream(struct cdn_client *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, cdn_client_msg_fn on_msg,
                      void *ud, const volatile sig_atomic_t *cancel, int timeout_ms,
                      cdn_err **err) {
    struct call k;
    if (call_begin(&k, c, method, timeout_ms, cancel) < 0)
        return cdn_err_set(err, EIO, "%s: cannot start a call", c->addr);
    int rc = 0;
    if (send_request(&k, req)) {
        for (;;) {
            ProtobufCMessage *m = NULL;
            rc = recv_message(&k, resp_desc, &m, err);
            if (rc <= 0)
                break;
            rc = on_msg(ud, m);
            protobuf_c_message_free_unpacked(m, NULL);
            if (rc < 0) {
                k.cancelled = true;
                grpc_call_cancel(k.call, NULL);
                break;
            }
        }
    }
    return call_end(&k, rc < 0 ? rc : 0, err);
}

int cdn_client_upload(struct cdn_client *c, const char *method, cdn_client_next_fn next, void *ud,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                      int timeout_ms, cdn_err **err) {
    struct call k;
    *resp = NULL;
    if (call_begin(&k, c, method, timeout_ms, NULL) < 0)
        return cdn_err_set(err, EIO, "%s: cannot start a call", c->addr);
    /* the server sends its metadata with its answer, after our last chunk: asked for then */
    grpc_op start = {.op = GRPC_OP_SEND_INITIAL_METADATA};
    int rc = 0;
    bool ok = start_batch(&k, &start, 1, TAG_START) && wait_batch(&k, TAG_START);
    while (ok) {
        const ProtobufCMessage *m = NULL;
        rc = next(ud, &m);
        if (rc <= 0)
            break;
        grpc_byte_buffer *bb = pack(m);
        grpc_op send = {.op = GRPC_OP_SEND_MESSAGE};
        send.data.send_message.send_message = bb;
        ok = start_batch(&k, &send, 1, TAG_SEND) && wait_batch(&k, TAG_SEND);
        grpc_byte_buffer_destroy(bb);
    }
    if (rc < 0) {
        grpc_call_cancel(k.call, NULL);
        k.cancelled = true;
    } else if (ok) {
        grpc_op close[2] = {{.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT},
                            {.op = GRPC_OP_RECV_INITIAL_METADATA}};
        close[1].data.recv_initial_metadata.recv_initial_metadata = &k.md_in;
        if (start_batch(&k, close, 2, TAG_SEND) && wait_batch(&k, TAG_SEND))
            rc = recv_message(&k, resp_desc, resp, err);
    }
    return call_end_with_answer(&k, rc, method, resp, err);
}
