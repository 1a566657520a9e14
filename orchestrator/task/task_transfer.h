/* SPDX-License-Identifier: Apache-2.0 */
/* Moving a task's files across the VM boundary (internal to cdn_task): the worktree in, the
 * guest's /workspace back (bounded, and never its .git), artifacts into the evidence. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "archive.h"
#include "channel.h"
#include "err.h"

struct cdn_evidence;
struct cdn_workspace_listing;

#define TASK_GUEST_WORKSPACE "/workspace"

/* What /workspace may bring back unless the task says otherwise: 1 GiB of file data, 50 000
 * entries (a guest flooding the host with tiny files is refused), and the archive defaults for
 * path length and depth. Zero fields of l are filled. */
#define TASK_RESULT_DEFAULT_BYTES (1ull << 30)
#define TASK_RESULT_DEFAULT_ENTRIES 50000u
void task_result_limits_fill(struct cdn_archive_limits *l);

/* The worktree, .git included (the agent may use git), unpacked into /workspace. */
int task_upload_workspace(struct cdn_channel *ch, const char *worktree, int timeout_ms,
                          cdn_err **err);
/* /workspace, without .git, extracted into result_dir (which must exist and be empty), each file
 * recorded in listing. An entry named .git at any depth, or any limit passed, fails the transfer
 * naming the entry. */
int task_collect_workspace(struct cdn_channel *ch, const char *result_dir,
                           const struct cdn_archive_limits *limits,
                           struct cdn_workspace_listing *listing, int timeout_ms, cdn_err **err);

struct task_artifact_caps {
    uint64_t max_each;  /* bytes per artifact */
    uint64_t max_total; /* bytes over all artifacts */
};
/* Each glob (relative ones are under cwd, absolute ones as they are) is matched on the host
 * against the guest tree under its fixed prefix; matching regular files go to artifacts/ in the
 * evidence. A file over the caps fails the transfer naming it. */
int task_pull_artifacts(struct cdn_channel *ch, struct cdn_evidence *ev, const char *cwd,
                        const char *const *globs, size_t n, const struct task_artifact_caps *caps,
                        const struct cdn_archive_limits *limits, int timeout_ms, cdn_err **err);
