/* SPDX-License-Identifier: Apache-2.0 */
/* libgit2 glue shared by the workspace files (internal to cdn_workspace). */
#pragma once

#include <git2.h>

#include "cleanup.h"
#include "err.h"

/* Turns libgit2's last error into a cdn_err: "WHAT: libgit2's message". */
int ws_git_err(cdn_err **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* libgit2 is initialised once per process. */
void ws_git_init(void);

DEFINE_TRIVIAL_CLEANUP_FUNC(git_repository *, git_repository_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_remote *, git_remote_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_object *, git_object_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_commit *, git_commit_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_tree *, git_tree_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_reference *, git_reference_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_index *, git_index_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_diff *, git_diff_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_diff_stats *, git_diff_stats_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(git_signature *, git_signature_free)

/* The mirror of url under repos_dir (created or fetched, under a lock); *path is malloc'd. */
int ws_mirror_sync(const char *repos_dir, const char *url, char **path, cdn_err **err);

/* Brings idx (the worktree's index as checked out) in line with tree_dir, which the repository's
 * work folder must point at; see ws_stage.c. */
struct cdn_workspace_listing;
int ws_stage_tree(git_repository *repo, git_index *idx, const char *tree_dir,
                  const struct cdn_workspace_listing *listing, cdn_err **err);
