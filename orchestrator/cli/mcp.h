/* SPDX-License-Identifier: Apache-2.0 */
/* cordon mcp's parts (internal): the protocol loop (mcp.c) and the tools (mcp_tools.c). */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "own_daemon.h"
#include "remote.h"

struct call;

struct mcp {
    struct cli_remote r;
    /* sandbox_create's defaults */
    const char *repo, *ref, *image, *policy_name;
    char *policy_text;
    uint32_t approval_wait_s;
    struct cli_own_daemon_opts own; /* without an address: a cordond of its own */
    bool initialized;
    pthread_mutex_t mu;     /* calls */
    pthread_mutex_t out_mu; /* stdout: one message at a time */
    struct call *calls;
    unsigned n_calls;
    /* connections to cordond between calls (under mu): a call takes one, or opens one */
    struct cdn_client *idle[8];
    unsigned n_idle;
};

/* A result for request id (result taken); a notification (params taken). Thread-safe. */
void mcp_reply(struct mcp *m, json_t *id, json_t *result);
void mcp_notify(struct mcp *m, const char *method, json_t *params);
/* A JSON-RPC error for request id (NULL: null). */
void mcp_error(struct mcp *m, json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The tools with their input schemas (a new array). */
json_t *mcp_tools_list(void);
/* tools/call (params: name, arguments, _meta.progressToken): answers id itself, on the caller's
 * thread; *cancel set means the client cancelled (the tool stops, its command is killed; no
 * answer is owed then). */
void mcp_tools_call(struct mcp *m, json_t *id, json_t *params, volatile sig_atomic_t *cancel);
/* Closes the idle connections (at exit, once no call runs). */
void mcp_tools_close(struct mcp *m);
