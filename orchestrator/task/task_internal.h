/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_task share (internal). */
#pragma once

#include <stdbool.h>

#include "evidence.h"
#include "task.h"
#include "workspace.h"

struct task_ctx {
    const struct cdn_task_spec *spec;
    struct cdn_task_result *res;
    const char *dir; /* tasks/<id> */
    bool devbox;
    struct cdn_evidence *ev;              /* always */
    struct cdn_workspace *ws;             /* NULL without a repository */
    const char *result_dir;               /* tasks/<id>/result, with a repository */
    struct cdn_workspace_listing listing; /* what came back into result_dir */
    const char *cwd; /* the command's folder in the guest (NULL: the agent's) */
    uint64_t t0;
    const char *overlay; /* the task's disk while the VM runs (devbox), else NULL */
};

void task_notice(const struct cdn_task_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool task_cancelled(const struct cdn_task_spec *spec);

/* The policy's decision on the command (before any VM boots); -EPERM when refused. */
int task_gate(struct task_ctx *t, cdn_err **err);
/* The policy's limits folded into s (larger options refused); nproc holds the rlimit. */
int task_apply_limits(struct cdn_task_spec *s, struct cdn_rlimit *nproc, cdn_err **err);

/* The task's time in its VM: boot, workspace in, the command, workspace and artifacts out. The
 * VM is destroyed (and its overlay deleted) before this returns, on every path. */
int task_in_vm(struct task_ctx *t, cdn_err **err);
