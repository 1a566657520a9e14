/* SPDX-License-Identifier: Apache-2.0 */
/* The result of a task: the guest's tree, extracted on the host, staged against the base commit
 * with the repository's work folder pointed at it for the duration (so nothing is copied and the
 * guest's .git, if it sent one, is never opened: libgit2 does not descend into .git). The diff is
 * tree to tree, with rename detection, and printed as a patch `git apply` accepts, binary files
 * included. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "workspace.h"
#include "ws_git.h"
#include "ws_internal.h"

#define AUTHOR_NAME "cordon"
#define AUTHOR_EMAIL "cordon@localhost"

static void count(git_diff *diff, struct cdn_diff_stats *s) {
    size_t n = git_diff_num_deltas(diff);
    for (size_t i = 0; i < n; i++) {
        const git_diff_delta *d = git_diff_get_delta(diff, i);
        switch (d->status) {
        case GIT_DELTA_ADDED: s->added++; break;
        case GIT_DELTA_DELETED: s->deleted++; break;
        case GIT_DELTA_RENAMED: s->renamed++; break;
        default: s->modified++; break;
        }
        if (d->status == GIT_DELTA_MODIFIED && d->old_file.mode != d->new_file.mode)
            s->mode_changed++;
        if (d->flags & GIT_DIFF_FLAG_BINARY)
            s->binary++;
    }
}

/* The worktree's index (the base as checked out, with the stat data staging relies on) brought
 * in line with tree_dir, in memory: nothing is written but the blobs of changed files. */
static int stage(struct cdn_workspace *ws, const char *tree_dir,
                 const struct cdn_workspace_listing *listing, git_index **out, cdn_err **err) {
    _cleanup_(git_index_freep) git_index *idx = NULL;
    if (git_repository_set_workdir(ws->repo, tree_dir, 0) < 0)
        return ws_git_err(err, "reading the result tree %s", tree_dir);
    int r = 0;
    if (git_repository_index(&idx, ws->repo) < 0 || git_index_read(idx, 1) < 0)
        r = ws_git_err(err, "reading the index of %s", ws->path);
    if (r == 0)
        r = ws_stage_tree(ws->repo, idx, tree_dir, listing, err);
    /* Back to the worktree, whatever happened. */
    if (git_repository_set_workdir(ws->repo, ws->path, 0) < 0 && r == 0)
        r = ws_git_err(err, "returning to the worktree %s", ws->path);
    if (r == 0)
        *out = TAKE_PTR(idx);
    return r;
}

static int diff_staged(git_repository *repo, git_tree *a, git_index *b, git_diff **out,
                       struct cdn_workspace_result *res, cdn_err **err) {
    git_diff_options o = GIT_DIFF_OPTIONS_INIT;
    o.flags = GIT_DIFF_SHOW_BINARY;
    git_diff_find_options fo = GIT_DIFF_FIND_OPTIONS_INIT;
    fo.flags = GIT_DIFF_FIND_RENAMES;
    _cleanup_(git_diff_stats_freep) git_diff_stats *st = NULL;
    git_buf patch = GIT_BUF_INIT;
    if (git_diff_tree_to_index(out, repo, a, b, &o) < 0 || git_diff_find_similar(*out, &fo) < 0 ||
        git_diff_to_buf(&patch, *out, GIT_DIFF_FORMAT_PATCH) < 0 ||
        git_diff_get_stats(&st, *out) < 0)
        return ws_git_err(err, "diffing the result against the base");
    res->stats.files = git_diff_stats_files_changed(st);
    res->stats.insertions = git_diff_stats_insertions(st);
    res->stats.deletions = git_diff_stats_deletions(st);
    count(*out, &res->stats);
    res->patch = malloc(patch.size + 1);
    if (!res->patch) {
        git_buf_dispose(&patch);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    memcpy(res->patch, patch.ptr ? patch.ptr : "", patch.size);
    res->patch[patch.size] = '\0';
    res->patch_len = patch.size;
    git_buf_dispose(&patch);
    return 0;
}

static uint64_t elapsed_us(const struct timespec *a, const struct timespec *b) {
    return (uint64_t)((b->tv_sec - a->tv_sec) * 1000000 + (b->tv_nsec - a->tv_nsec) / 1000);
}

/* Every path the diffs touch, old and new names, for a checkout limited to them. */
static int changed_paths(git_diff *const *diffs, size_t n_diffs, git_strarray *out, cdn_err **err) {
    size_t n = 0;
    for (size_t k = 0; k < n_diffs; k++)
        n += diffs[k] ? git_diff_num_deltas(diffs[k]) : 0;
    out->strings = calloc(2 * n + 1, sizeof(char *));
    out->count = 0;
    if (!out->strings)
        return cdn_err_set(err, ENOMEM, "out of memory");
    for (size_t k = 0; k < n_diffs; k++)
        for (size_t i = 0; diffs[k] && i < git_diff_num_deltas(diffs[k]); i++) {
            const git_diff_delta *d = git_diff_get_delta(diffs[k], i);
            out->strings[out->count++] = (char *)d->new_file.path;
            if (strcmp(d->old_file.path, d->new_file.path) != 0)
                out->strings[out->count++] = (char *)d->old_file.path;
        }
    return 0;
}

int cdn_workspace_commit_tree(struct cdn_workspace *ws, const char *tree_dir,
                              const struct cdn_workspace_listing *listing, const char *message,
                              struct cdn_workspace_result *res, cdn_err **err) {
    *res = (struct cdn_workspace_result){0};
    git_oid base_oid, tip_oid, tree_oid, commit_oid;
    _cleanup_(git_commit_freep) git_commit *base = NULL;
    _cleanup_(git_commit_freep) git_commit *tip = NULL;
    _cleanup_(git_tree_freep) git_tree *base_tree = NULL;
    _cleanup_(git_tree_freep) git_tree *tip_tree = NULL;
    _cleanup_(git_tree_freep) git_tree *new_tree = NULL;
    _cleanup_(git_diff_freep) git_diff *diff = NULL;
    _cleanup_(git_diff_freep) git_diff *earlier = NULL;
    char ref[300];
    snprintf(ref, sizeof(ref), "refs/heads/%s", ws->branch);
    if (git_oid_fromstr(&base_oid, ws->base) < 0 ||
        git_commit_lookup(&base, ws->repo, &base_oid) < 0 || git_commit_tree(&base_tree, base) < 0)
        return ws_git_err(err, "reading the base commit %s", ws->base);
    /* A sandbox's result can be taken more than once: each take is a commit on top of the last
     * (the diff is always against the base). */
    if (git_reference_name_to_id(&tip_oid, ws->repo, ref) < 0 ||
        git_commit_lookup(&tip, ws->repo, &tip_oid) < 0 || git_commit_tree(&tip_tree, tip) < 0)
        return ws_git_err(err, "reading the tip of %s", ws->branch);
    bool tip_is_base = git_oid_equal(&tip_oid, &base_oid);
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    _cleanup_(git_index_freep) git_index *idx = NULL;
    int r = stage(ws, tree_dir, listing, &idx, err);
    if (r < 0)
        return r;
    if ((r = diff_staged(ws->repo, base_tree, idx, &diff, res, err)) < 0)
        return r;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->diff_us = elapsed_us(&t0, &t1);
    res->changed = git_diff_num_deltas(diff) > 0;
    git_oid_tostr(res->sha, sizeof(res->sha), &tip_oid);
    if (!res->changed && tip_is_base)
        return git_index_read(idx, 1) < 0 ? ws_git_err(err, "reloading the index") : 0;
    if (git_index_write_tree(&tree_oid, idx) < 0 ||
        git_tree_lookup(&new_tree, ws->repo, &tree_oid) < 0)
        return ws_git_err(err, "writing the result tree");
    /* The index on disk again: the checkout below updates it from the tip. */
    if (git_index_read(idx, 1) < 0)
        return ws_git_err(err, "reloading the index of %s", ws->path);
    if (git_oid_equal(&tree_oid, git_tree_id(tip_tree)))
        return 0; /* the same tree as the last take */
    /* What the worktree holds differs from the new tree only where either differs from the
     * base. */
    if (!tip_is_base && git_diff_tree_to_tree(&earlier, ws->repo, base_tree, tip_tree, NULL) < 0)
        return ws_git_err(err, "diffing the last result against the base");
    _cleanup_(git_signature_freep) git_signature *sig = NULL;
    const git_commit *parents[] = {tip};
    git_checkout_options cko = GIT_CHECKOUT_OPTIONS_INIT;
    cko.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DISABLE_PATHSPEC_MATCH;
    git_diff *diffs[] = {diff, earlier};
    if ((r = changed_paths(diffs, 2, &cko.paths, err)) < 0)
        return r;
    _cleanup_free_ char **paths = cko.paths.strings; /* the strings belong to the diffs */
    if (git_signature_now(&sig, AUTHOR_NAME, AUTHOR_EMAIL) < 0 ||
        git_commit_create(&commit_oid, ws->repo, ref, sig, sig, "UTF-8", message, new_tree, 1,
                          parents) < 0)
        return ws_git_err(err, "committing the result on %s", ws->branch);
    git_oid_tostr(res->sha, sizeof(res->sha), &commit_oid);
    /* The host worktree becomes the result: libgit2 writes what the commit holds, for the paths
     * the diffs name (the rest is the base already). */
    if (git_checkout_head(ws->repo, &cko) < 0)
        return ws_git_err(err, "checking the result out in %s", ws->path);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    res->commit_us = elapsed_us(&t1, &t2);
    return 0;
}

void cdn_workspace_result_free(struct cdn_workspace_result *res) {
    free(res->patch);
    res->patch = NULL;
}

int cdn_workspace_read_base(struct cdn_workspace *ws, const char *path, size_t max, char **out,
                            size_t *len) {
    *out = NULL;
    *len = 0;
    char spec[4200];
    snprintf(spec, sizeof(spec), "%s:%s", cdn_workspace_base(ws), path);
    git_object *obj = NULL;
    if (git_revparse_single(&obj, ws->repo, spec) < 0)
        return -ENOENT;
    int r = -EINVAL;
    if (git_object_type(obj) == GIT_OBJECT_BLOB) {
        const git_blob *b = (const git_blob *)obj;
        size_t n = (size_t)git_blob_rawsize(b);
        r = n > max ? -EFBIG : (*out = malloc(n + 1)) ? 0 : -ENOMEM;
        if (r == 0) {
            memcpy(*out, git_blob_rawcontent(b), n);
            (*out)[n] = '\0';
            *len = n;
        }
    }
    git_object_free(obj);
    return r;
}
