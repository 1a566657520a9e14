/* SPDX-License-Identifier: Apache-2.0 */
/* exec_spawn: the fork/exec half of agent_exec (internal to the exec module). */
#pragma once

#include <sys/types.h>

#include "err.h"
#include "frame.h"

struct exec_spawned {
    pid_t pid;     /* leader of a new session and process group */
    int out_fd[2]; /* stdout, stderr read ends (stderr -1 with a pty); non-blocking, owned */
    int in_fd;     /* stdin write end, -1 unless STDIN_PIPE; non-blocking, owned */
};

/* Validates req and starts it. Fails with a message naming what was wrong (argv, env, rlimit,
 * cwd, or the program itself) and the errno of the failing step. */
int exec_spawn(const CordonAgent__Exec *req, struct exec_spawned *out, cdn_err **err);
