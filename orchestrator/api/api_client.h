/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_client: a client of cordond's API (service cordon.v1.Sandboxes) on gRPC core's C API, for
 * the cordon CLI and the benchmarks. Messages are protobuf-c's (cordon.pb-c.h); gRPC's types stay
 * inside. A status from the daemon comes back as a negative errno (the inverse of the server's
 * mapping: NOT_FOUND -ENOENT, PERMISSION_DENIED -EPERM, ...) and its message in *err.
 * One caller thread at a time. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <signal.h>

#include "cordon.pb-c.h"
#include "err.h"

/* Where a client finds cordond unless told: */
#define CDN_CLIENT_DEFAULT_ADDR "unix:/run/cordon/cordond.sock"
/* The largest message it accepts (a diff, a manifest). */
#define CDN_CLIENT_MAX_MESSAGE (64u << 20)

struct cdn_client_opts {
    /* "unix:/path" (or "/path"), or "host:port" for TLS with a client certificate */
    const char *addr;
    const char *tls_cert, *tls_key, *tls_ca; /* PEM files; TCP only */
    const char *tls_server_name;             /* the name the server's certificate must carry */
};

struct cdn_client;

/* A PEM file (certificate, key, CA) into memory: at most 1 MiB, not empty; caller frees. The
 * server reads its own with it too. */
char *cdn_read_pem(const char *path, cdn_err **err);

/* Sets up the channel; nothing connects until the first call. */
int cdn_client_open(const struct cdn_client_opts *o, struct cdn_client **out, cdn_err **err);
void cdn_client_free(struct cdn_client *c);
void cdn_client_freep(struct cdn_client **c);
const char *cdn_client_addr(const struct cdn_client *c);
/* After a call refused with -EAGAIN (RESOURCE_EXHAUSTED with a retry-after-ms hint): how long the
 * daemon suggests waiting, in ms. */
uint32_t cdn_client_retry_after_ms(const struct cdn_client *c);

/* A unary call (method: "CreateSandbox", ...). *resp is freed with
 * protobuf_c_message_free_unpacked. timeout_ms <= 0: no deadline. */
int cdn_client_call(struct cdn_client *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                    int timeout_ms, cdn_err **err);

/* A server-streaming call: each message to on_msg (owned by the client; a negative return cancels
 * the call and is returned). Setting *cancel (a signal handler's flag) cancels it too: -EINTR. */
typedef int (*cdn_client_msg_fn)(void *ud, const ProtobufCMessage *msg);
int cdn_client_stream(struct cdn_client *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, cdn_client_msg_fn on_msg,
                      void *ud, const volatile sig_atomic_t *cancel, int timeout_ms, cdn_err **err);

/* A client-streaming call: next() fills *msg (1), says the stream ended (0) or fails (< 0); a
 * message is packed and sent before next() is asked again, so it may reuse its storage. */
typedef int (*cdn_client_next_fn)(void *ud, const ProtobufCMessage **msg);
int cdn_client_upload(struct cdn_client *c, const char *method, cdn_client_next_fn next, void *ud,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                      int timeout_ms, cdn_err **err);
