/* SPDX-License-Identifier: Apache-2.0 */
/* One command through cordond's Exec stream, for `cordon exec` and `cordon run`: its output
 * written live (or kept for --json), its approval request shown (and handed to the caller, who
 * may decide it), its exit taken; and what it became, as an exit code and as JSON. */
#pragma once

#include <signal.h>

#include "remote.h"

struct cli_exec {
    const char *cmd; /* "exec", "run": names the messages */
    bool json;       /* keep the output (up to 16 MiB in all) rather than write it */
    bool quiet;      /* the daemon's notices (a deferred boot's fall-backs) are not shown */
    /* After an approval request was shown: the caller may decide it (a call on the same
     * client is allowed here), or let the stream wait. */
    void (*on_pending)(void *ud, const Cordon__V1__Approval *a);
    void *ud;
    /* filled by the stream */
    struct cdn_buf out[3];
    bool truncated_locally;
    Cordon__V1__Exit exit;
    bool exited;
    char approval[64];
    char handle[16]; /* started in the background (exec --detach): its handle */
};

/* The options both `cordon exec` and `cordon run` give a command: --env K=V ('e', into env,
 * at most CLI_EXEC_MAX_ENV), --workdir DIR ('w'), --timeout S ('t'). 1 when c was one of them,
 * 0 when not, -1 (printed, naming cmd) when its value is wrong. */
#define CLI_EXEC_MAX_ENV 256
#define CLI_EXEC_LONGOPTS                                                                          \
    {"env", required_argument, NULL, 'e'}, {"workdir", required_argument, NULL, 'w'}, {            \
        "timeout", required_argument, NULL, 't'                                                    \
    }
int cli_exec_option(const char *cmd, int c, char *arg, Cordon__V1__ExecRequest *q, char **env);

/* Runs q through c until its exit or its start in the background (0), or a failure (< 0 with
 * *err; -EINTR once *cancel is set). */
int cli_exec_stream(struct cdn_client *c, const Cordon__V1__ExecRequest *q, struct cli_exec *x,
                    const volatile sig_atomic_t *cancel, cdn_err **err);
/* Another call answering with ExecEvents (ProcessLogs): its output written (or kept) the same
 * way, its Exit taken when one comes; 0 when the stream ended OK. */
int cli_exec_events(struct cdn_client *c, const char *method, const ProtobufCMessage *q,
                    struct cli_exec *x, const volatile sig_atomic_t *cancel, cdn_err **err);
/* The exit code of an exited command: 124 timed out, 128+N killed by signal N, else its own. */
int cli_exec_code(const struct cli_exec *x);
/* exit_code, signal, timed_out, output_truncated, stdout, stderr, output_not_utf8, command_ms,
 * user_ms, sys_ms, max_rss_kib (and approval, when one was asked for). */
json_t *cli_exec_json(struct cli_exec *x, int code);
void cli_exec_free(struct cli_exec *x);
