/* SPDX-License-Identifier: Apache-2.0 */
/* One gRPC call on the server: its batches (receive, write, close, final status), a send queue
 * any thread may add to (one write in flight at a time, as gRPC requires), and its lifetime (a
 * reference per outstanding batch and per job holding it). */
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"

void api_call_ref(struct api_call *c) {
    pthread_mutex_lock(&c->mu);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
}

void api_call_unref(struct api_call *c) {
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left > 0)
        return;
    while (c->q) {
        struct api_out *o = c->q;
        c->q = o->next;
        grpc_byte_buffer_destroy(o->bb);
        free(o);
    }
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->has_status_slice)
        grpc_slice_unref(c->status_slice);
    if (c->retry_md_set)
        grpc_slice_unref(c->retry_md[0].value);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    grpc_metadata_array_destroy(&c->trailing);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->drained);
    free(c->in);
    free(c);
}

bool api_call_gone(struct api_call *c) {
    pthread_mutex_lock(&c->mu);
    bool gone = c->closed || c->finishing;
    pthread_mutex_unlock(&c->mu);
    return gone;
}

/* Starts the next batch (under mu): a queued message, with the final status when it is the last
 * one; or the final status alone. */
static void pump_locked(struct api_call *c) {
    if (c->writing || c->finished)
        return;
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->md_sent = true;
    }
    struct api_out *o = c->q;
    if (o) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = o->bb;
        n++;
    }
    bool final = c->finishing && (!o || !o->next);
    if (final) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = c->status;
        ops[n].data.send_status_from_server.status_details =
            c->has_status_slice ? &c->status_slice : NULL;
        ops[n].data.send_status_from_server.trailing_metadata_count = 0;
        if (c->retry_after_ms) {
            char v[16];
            snprintf(v, sizeof(v), "%u", c->retry_after_ms);
            c->retry_md[0].key = grpc_slice_from_static_string("retry-after-ms");
            c->retry_md[0].value = grpc_slice_from_copied_string(v);
            c->retry_md_set = true;
            ops[n].data.send_status_from_server.trailing_metadata = c->retry_md;
            ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        }
        n++;
        c->finished = true;
    }
    if (!o && !final)
        return;
    c->writing = true;
    struct api_tag *tag = final ? &c->t_final : &c->t_write;
    if (grpc_call_start_batch(c->call, ops, n, tag, NULL) != GRPC_CALL_OK) {
        c->writing = false;
        c->finished = true;
        api_log(c->api, "%s: a batch was refused", c->method);
    }
}

static int send_msg(struct api_call *c, const ProtobufCMessage *msg, int wait_ms, bool last) {
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    struct api_out *o = calloc(1, sizeof(*o));
    if (!o) {
        grpc_slice_unref(slice);
        return -ENOMEM;
    }
    o->bb = grpc_raw_byte_buffer_create(&slice, 1);
    o->len = len;
    grpc_slice_unref(slice);
    pthread_mutex_lock(&c->mu);
    if (wait_ms > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!c->finishing && !c->closed && c->q_bytes > 0 &&
               c->q_bytes + len > API_SEND_QUEUE_MAX &&
               pthread_cond_timedwait(&c->drained, &c->mu, &until) == 0) {
        }
    }
    if (c->finishing || c->closed || (c->q_bytes > 0 && c->q_bytes + len > API_SEND_QUEUE_MAX)) {
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(o->bb);
        free(o);
        return -EAGAIN;
    }
    if (c->q_tail)
        c->q_tail->next = o;
    else
        c->q = o;
    c->q_tail = o;
    c->q_bytes += len;
    if (last) { /* the status rides in the message's batch: one write, not two */
        c->finishing = true;
        c->status = GRPC_STATUS_OK;
    }
    pump_locked(c);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int api_call_send(struct api_call *c, const ProtobufCMessage *msg) {
    return send_msg(c, msg, 0, false);
}

int api_call_send_last(struct api_call *c, const ProtobufCMessage *msg) {
    return send_msg(c, msg, 0, true);
}

int api_call_send_wait(struct api_call *c, const ProtobufCMessage *msg, int timeout_ms) {
    return send_msg(c, msg, timeout_ms, false);
}

void api_call_finish(struct api_call *c, grpc_status_code code, const char *fmt, ...) {
    char msg[2048] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&c->mu);
    if (!c->finishing) {
        c->finishing = true;
        c->status = code;
        c->status_slice = grpc_slice_from_copied_string(msg);
        c->has_status_slice = true;
        pump_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
}

grpc_status_code api_status_of(int rc) {
    switch (-rc) {
    case 0: return GRPC_STATUS_OK;
    case EINVAL:
    case ENAMETOOLONG:
    case EISDIR:
    case ENOTDIR: return GRPC_STATUS_INVALID_ARGUMENT;
    case ENOENT: return GRPC_STATUS_NOT_FOUND;
    case EPERM:
    case EACCES: return GRPC_STATUS_PERMISSION_DENIED;
    case EDQUOT:
    case EAGAIN:
    case EFBIG:
    case ENOSPC:
    case E2BIG: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case EBADFD:
    case EALREADY: return GRPC_STATUS_FAILED_PRECONDITION;
    case ECANCELED: return GRPC_STATUS_ABORTED;
    case ENOTCONN: return GRPC_STATUS_UNAVAILABLE;
    default: return GRPC_STATUS_INTERNAL;
    }
}

void api_call_fail(struct api_call *c, int rc, const cdn_err *e) {
    api_call_finish(c, api_status_of(rc), "%s", e ? cdn_err_msg(e) : strerror(-rc));
}

int api_call_sandbox(struct api_call *c, const char *id, struct cdn_store_sandbox *sb) {
    cdn_err *e = NULL;
    int r = cdn_store_sandbox_get(c->api->o.store, c->tenant, id, sb, &e);
    if (r < 0)
        api_call_fail(c, r, e);
    cdn_err_free(e);
    return r;
}

void api_call_recv(struct api_call *c) {
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    api_call_ref(c);
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) != GRPC_CALL_OK) {
        api_call_unref(c);
        api_call_finish(c, GRPC_STATUS_INTERNAL, "cannot receive");
    }
}

ProtobufCMessage *api_call_decode(struct api_call *c, const ProtobufCMessageDescriptor *d) {
    if (!c->recv_buf) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
        return NULL;
    }
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, c->recv_buf)) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "unreadable request");
        return NULL;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    if (!m)
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid %s", d->name);
    return m;
}

void api_call_on_tag(struct api_tag *t, bool ok) {
    struct api_call *c = t->c;
    switch (t->kind) {
    case TAG_RECV:
        if (strcmp(c->method, "/cordon.v1.Sandboxes/WriteFile") == 0)
            api_write_chunk(c);
        else if (!ok || !c->recv_buf)
            api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
        else
            api_dispatch(c);
        api_call_unref(c);
        break;
    case TAG_WRITE: {
        pthread_mutex_lock(&c->mu);
        struct api_out *o = c->q;
        if (o) {
            c->q = o->next;
            if (!c->q)
                c->q_tail = NULL;
            c->q_bytes -= o->len;
        }
        c->writing = false;
        if (!ok) { /* the client is gone: drop what is queued */
            c->closed = true;
        }
        pump_locked(c);
        pthread_cond_broadcast(&c->drained);
        pthread_mutex_unlock(&c->mu);
        if (o) {
            grpc_byte_buffer_destroy(o->bb);
            free(o);
        }
        break;
    }
    case TAG_CLOSE:
        pthread_mutex_lock(&c->mu);
        c->closed = true;
        pthread_cond_broadcast(&c->drained);
        bool finishing = c->finishing;
        pthread_mutex_unlock(&c->mu);
        /* A call nobody finished (the client cancelled): end it so its resources go. */
        if (!finishing && c->cancelled_flag)
            api_call_finish(c, GRPC_STATUS_CANCELLED, "cancelled by the client");
        api_call_unref(c);
        break;
    case TAG_FINAL: {
        /* The last message went with the status. */
        pthread_mutex_lock(&c->mu);
        struct api_out *o = c->q;
        c->q = c->q_tail = NULL;
        c->q_bytes = 0;
        c->writing = false;
        pthread_mutex_unlock(&c->mu);
        if (o) {
            grpc_byte_buffer_destroy(o->bb);
            free(o);
        }
        api_call_unref(c);
        break;
    }
    case TAG_NEW: break;
    }
}

int api_call_on_thread(struct api_call *c, void *(*fn)(void *), void *arg) {
    api_call_ref(c);
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0) {
        api_call_unref(c);
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a thread");
        return -1;
    }
    pthread_detach(t);
    return 0;
}

void api_call_who(const struct api_call *c, char *out, size_t size) {
    snprintf(out, size, "tenant %s", c->tenant);
}
