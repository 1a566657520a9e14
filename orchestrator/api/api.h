/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_api: cordond's public API (proto/cordon.proto, service cordon.v1.Sandboxes) on gRPC core's
 * C API: one completion queue served by one thread, messages (de)serialised with protobuf-c.
 * It listens on a unix socket (the caller's uid, read with SO_PEERCRED, is its tenant "uid:N")
 * and optionally on TCP with TLS and required client certificates (the certificate's subject is
 * the tenant). A tenant sees and touches only its own sandboxes. */
#pragma once

#include "err.h"
#include "scheduler.h"
#include "store.h"

struct cdn_api;

struct cdn_api_opts {
    const char *unix_path;                          /* NULL: no unix socket */
    unsigned socket_mode;                           /* 0: 0660 */
    const char *tcp_addr;                           /* "host:port" or NULL; needs the three below */
    const char *tls_cert, *tls_key, *tls_client_ca; /* PEM files */
    struct cdn_sched *sched;
    struct cdn_store *store;
    void (*log)(void *ud, const char *line);
    void *log_ud;
};

/* Binds, listens and starts serving on threads of its own. */
int cdn_api_start(const struct cdn_api_opts *opts, struct cdn_api **out, cdn_err **err);
/* Stops accepting and cancels the calls in flight (jobs still running may finish theirs). */
void cdn_api_drain(struct cdn_api *api);
/* Drains, then waits for its threads and frees. */
void cdn_api_stop(struct cdn_api *api);
void cdn_api_stopp(struct cdn_api **api);
