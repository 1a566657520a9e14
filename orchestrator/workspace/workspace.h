/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_workspace: a task's repository through libgit2 (no git subprocess). A bare mirror per
 * repository under STATE/repos (cloned once, fetched after), a worktree cloned from it at the
 * base commit on branch cordon/<task-id>, and, at the end, the guest's tree taken as the result:
 * diffed against the base on the host, committed on the task branch and checked out in the
 * worktree. The guest's .git is never read. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct cdn_workspace;

struct cdn_workspace_opts {
    const char *state_dir; /* mirrors go to STATE/repos */
    const char *repo;      /* a URL, or a local path to a repository */
    const char *ref;       /* a branch, tag or commit SHA (default: the repository's HEAD) */
    const char *dir;       /* the worktree to create (must not exist yet) */
    const char *task_id;   /* names the branch cordon/<task_id> */
};

/* Mirrors (or fetches), resolves the ref to a commit and checks the worktree out at it. A ref
 * that does not exist is an error naming it and the repository. */
int cdn_workspace_open(const struct cdn_workspace_opts *opts, struct cdn_workspace **out,
                       cdn_err **err);
void cdn_workspace_free(struct cdn_workspace *ws);
void cdn_workspace_freep(struct cdn_workspace **ws);

const char *cdn_workspace_path(const struct cdn_workspace *ws);
const char *cdn_workspace_base(const struct cdn_workspace *ws);   /* 40 hex */
const char *cdn_workspace_branch(const struct cdn_workspace *ws); /* cordon/<task-id> */
const char *cdn_workspace_url(const struct cdn_workspace *ws);    /* as given, for evidence */

struct cdn_diff_stats {
    size_t files, insertions, deletions;
    size_t added, deleted, modified, renamed, mode_changed, binary;
};

struct cdn_workspace_result {
    bool changed; /* false: the tree equals the base, no commit was made */
    char sha[41]; /* the task branch's commit (the base when nothing changed) */
    struct cdn_diff_stats stats;
    char *patch; /* `git apply`-able patch against the base (binary included); caller frees */
    size_t patch_len;
};

/* Takes tree_dir (the guest's /workspace, extracted on the host; any .git in it is ignored) as
 * the task's result: stages it against the base (honouring .gitignore for new files), diffs with
 * rename detection, commits on the task branch with a fixed author and `message`, and checks the
 * commit out in the worktree. */
int cdn_workspace_commit_tree(struct cdn_workspace *ws, const char *tree_dir, const char *message,
                              struct cdn_workspace_result *res, cdn_err **err);
void cdn_workspace_result_free(struct cdn_workspace_result *res);
