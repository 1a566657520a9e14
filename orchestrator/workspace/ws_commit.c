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

/* The index, reset to the base, brought in line with tree_dir; written out as a tree. */
static int stage(struct cdn_workspace *ws, git_tree *base, const char *tree_dir, git_oid *tree,
                 cdn_err **err) {
    _cleanup_(git_index_freep) git_index *idx = NULL;
    if (git_repository_set_workdir(ws->repo, tree_dir, 0) < 0)
        return ws_git_err(err, "reading the result tree %s", tree_dir);
    int r = 0;
    if (git_repository_index(&idx, ws->repo) < 0 || git_index_read_tree(idx, base) < 0 ||
        git_index_add_all(idx, NULL, GIT_INDEX_ADD_DEFAULT, NULL, NULL) < 0 ||
        git_index_update_all(idx, NULL, NULL, NULL) < 0 || git_index_write_tree(tree, idx) < 0)
        r = ws_git_err(err, "staging the result tree %s", tree_dir);
    /* Back to the worktree, whatever happened; the index on disk is rewritten by the checkout. */
    if (git_repository_set_workdir(ws->repo, ws->path, 0) < 0 && r == 0)
        r = ws_git_err(err, "returning to the worktree %s", ws->path);
    if (r == 0 && git_index_read(idx, 1) < 0)
        r = ws_git_err(err, "reloading the index of %s", ws->path);
    return r;
}

static int diff_trees(git_repository *repo, git_tree *a, git_tree *b, git_diff **out,
                      struct cdn_workspace_result *res, cdn_err **err) {
    git_diff_options o = GIT_DIFF_OPTIONS_INIT;
    o.flags = GIT_DIFF_SHOW_BINARY;
    git_diff_find_options fo = GIT_DIFF_FIND_OPTIONS_INIT;
    fo.flags = GIT_DIFF_FIND_RENAMES;
    _cleanup_(git_diff_stats_freep) git_diff_stats *st = NULL;
    git_buf patch = GIT_BUF_INIT;
    if (git_diff_tree_to_tree(out, repo, a, b, &o) < 0 || git_diff_find_similar(*out, &fo) < 0 ||
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

int cdn_workspace_commit_tree(struct cdn_workspace *ws, const char *tree_dir, const char *message,
                              struct cdn_workspace_result *res, cdn_err **err) {
    *res = (struct cdn_workspace_result){0};
    git_oid base_oid, tree_oid, commit_oid;
    _cleanup_(git_commit_freep) git_commit *base = NULL;
    _cleanup_(git_tree_freep) git_tree *base_tree = NULL;
    _cleanup_(git_tree_freep) git_tree *new_tree = NULL;
    _cleanup_(git_diff_freep) git_diff *diff = NULL;
    if (git_oid_fromstr(&base_oid, ws->base) < 0 ||
        git_commit_lookup(&base, ws->repo, &base_oid) < 0 || git_commit_tree(&base_tree, base) < 0)
        return ws_git_err(err, "reading the base commit %s", ws->base);
    int r = stage(ws, base_tree, tree_dir, &tree_oid, err);
    if (r < 0)
        return r;
    if (git_tree_lookup(&new_tree, ws->repo, &tree_oid) < 0)
        return ws_git_err(err, "reading the staged tree");
    if ((r = diff_trees(ws->repo, base_tree, new_tree, &diff, res, err)) < 0)
        return r;
    res->changed = !git_oid_equal(&tree_oid, git_tree_id(base_tree));
    snprintf(res->sha, sizeof(res->sha), "%s", ws->base);
    if (!res->changed)
        return 0;
    _cleanup_(git_signature_freep) git_signature *sig = NULL;
    char ref[300];
    snprintf(ref, sizeof(ref), "refs/heads/%s", ws->branch);
    const git_commit *parents[] = {base};
    git_checkout_options cko = GIT_CHECKOUT_OPTIONS_INIT;
    cko.checkout_strategy = GIT_CHECKOUT_FORCE;
    if (git_signature_now(&sig, AUTHOR_NAME, AUTHOR_EMAIL) < 0 ||
        git_commit_create(&commit_oid, ws->repo, ref, sig, sig, "UTF-8", message, new_tree, 1,
                          parents) < 0)
        return ws_git_err(err, "committing the result on %s", ws->branch);
    git_oid_tostr(res->sha, sizeof(res->sha), &commit_oid);
    /* The host worktree becomes the result: libgit2 writes what the commit holds. */
    if (git_checkout_head(ws->repo, &cko) < 0)
        return ws_git_err(err, "checking the result out in %s", ws->path);
    return 0;
}

void cdn_workspace_result_free(struct cdn_workspace_result *res) {
    free(res->patch);
    res->patch = NULL;
}
