/* SPDX-License-Identifier: Apache-2.0 */
/* agent_exec: runs commands for Exec streams: process groups, pipes or a pty, credit-bounded
 * output, stdin, signals, timeouts and resource limits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"

/* The set of running commands, so SIGCHLD can be matched to its stream. */
struct agent_execs;

int agent_execs_new(struct agent_execs **out);
void agent_execs_free(struct agent_execs *x);
/* Starts req on stream id, or answers with an Error. */
void agent_exec_open(struct agent_execs *x, struct agent_conn *c, uint64_t id,
                     const CordonAgent__Exec *req);
/* Reaps every exited child (SIGCHLDs coalesce, so all of them, not one). */
void agent_execs_reap(struct agent_execs *x);
/* SIGKILLs the process group of every running command. */
void agent_execs_kill_all(struct agent_execs *x);
/* Kills every running command and reaps them, waiting at most timeout_ms, so that "shut down"
 * means the processes are gone. Their streams are closed without an Exit. */
void agent_execs_shutdown(struct agent_execs *x, int timeout_ms);
