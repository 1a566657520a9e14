/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_workspace: a task's repository through libgit2 (no git subprocess). A bare mirror per
 * repository under STATE/repos (cloned once, fetched after), a worktree cloned from it at the
 * base commit on branch cordon/<task-id>, and, at the end, the guest's tree taken as the result:
 * diffed against the base on the host, committed on the task branch and checked out in the
 * worktree. The guest's .git is never read. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive.h"
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

/* An approved result out of its worktree (tasks/<id>/workspace, branch task_branch): pushed to
 * remote (a URL or path) as branch target, fast-forward only, with token (a secret) for https;
 * or, with merge, merged into branch target of the repository at the path remote (fast-forward,
 * else a merge commit; refused on conflicts, and when target is checked out there). sha: the
 * commit the target then points at. */
struct cdn_workspace_publish {
    const char *worktree, *task_branch, *remote, *target, *token;
    bool merge;
};
int cdn_workspace_publish(const struct cdn_workspace_publish *p, char sha[41], cdn_err **err);
/* The task branch and the worktree back at the base commit (files the task added removed). */
int cdn_workspace_reset(struct cdn_workspace *ws, cdn_err **err);
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
    uint64_t diff_us;   /* staging, diff and patch: what the change is */
    uint64_t commit_us; /* the commit and the worktree's checkout of it */
};

/* What the extraction of a result tree recorded of each file and symlink (paths relative to the
 * tree): lets staging skip walking the tree and keep unchanged files by size and mtime. */
struct cdn_workspace_entry {
    char *path;
    bool link, exec;
    uint64_t size;
    int64_t mtime;
};
struct cdn_workspace_listing {
    struct cdn_workspace_entry *v;
    size_t n, cap;
};
int cdn_workspace_listing_add(struct cdn_workspace_listing *l, const char *path, bool link,
                              bool exec, uint64_t size, int64_t mtime);
void cdn_workspace_listing_free(struct cdn_workspace_listing *l);
/* A sink that records each entry into listing and passes everything on to inner (usually an
 * extractor's); out is what to hand to the reader. r must outlive the transfer. */
struct cdn_workspace_recorder {
    struct cdn_archive_sink inner;
    struct cdn_workspace_listing *listing;
};
void cdn_workspace_recorder_init(struct cdn_workspace_recorder *r,
                                 struct cdn_workspace_listing *listing,
                                 const struct cdn_archive_sink *inner,
                                 struct cdn_archive_sink *out);

/* Takes tree_dir (the guest's /workspace, extracted on the host; any .git in it is ignored) as
 * the task's result: stages it against the base (honouring .gitignore for new files), diffs with
 * rename detection, commits on the task branch with a fixed author and `message`, and checks the
 * changed paths out in the worktree. listing (may be NULL: the tree is walked) must describe
 * tree_dir exactly, as the extraction that wrote it recorded it. */
int cdn_workspace_commit_tree(struct cdn_workspace *ws, const char *tree_dir,
                              const struct cdn_workspace_listing *listing, const char *message,
                              struct cdn_workspace_result *res, cdn_err **err);
void cdn_workspace_result_free(struct cdn_workspace_result *res);

/* ---- dependency changes (ws_deps.c) ---- */
struct json_t;
/* "npm", "pip", "cargo" or "go" for a manifest or lockfile this reads (package.json,
 * package-lock.json, npm-shrinkwrap.json, requirements*.txt, Cargo.lock, go.sum), else NULL. */
const char *cdn_deps_manager(const char *path);
/* The dependencies that differ between two versions of such a file (a text NULL: absent): a new
 * array of {name, old, new} (old or new null when added or removed); NULL for other files. */
struct json_t *cdn_deps_changes(const char *path, const char *old_text, size_t old_len,
                                const char *new_text, size_t new_len);
/* path's bytes at the base commit (max bytes at most): 0, -ENOENT (not there), -EINVAL (not a
 * file), -EFBIG, -ENOMEM. The caller frees *out. */
int cdn_workspace_read_base(struct cdn_workspace *ws, const char *path, size_t max, char **out,
                            size_t *len);
