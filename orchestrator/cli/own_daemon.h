/* SPDX-License-Identifier: Apache-2.0 */
/* A cordond of a client process's own (`cordon run`, `cordon mcp` without --addr): in this
 * process, on a private socket and store under STATE/runs/XXXXXX, on the same state folder as
 * every other; its sandboxes' folders carry this process as their owner (a crash is swept like any
 * dead task's), and STATE/runs/XXXXXX/addr lets `cordon approvals --state` find it. */
#pragma once

#include "daemon.h"
#include "err.h"

struct cli_own_daemon_opts {
    const char *state, *images, *uri, *accel; /* NULL: the defaults */
    const char *default_policy;               /* for sandboxes created without one */
    unsigned boot_timeout_s;                  /* 0: 60 */
    unsigned approval_timeout_s;              /* how long a command may wait for a person */
};

struct cli_own_daemon {
    struct cli_daemon *d;
    char dir[4200];      /* STATE/runs/XXXXXX */
    char sock_dir[4200]; /* where its socket is: dir, or /tmp/cordon-run-XXXXXX when that is long */
    char addr[4400];     /* what clients connect to */
};

/* Its results never wait for a review (the process's user reads them: it goes with the process). */
int cli_own_daemon_start(const struct cli_own_daemon_opts *o, struct cli_own_daemon *od,
                         cdn_err **err);
/* Stops it and removes its folder (safe on a zeroed or half-started one). */
void cli_own_daemon_stop(struct cli_own_daemon *od);
