/* SPDX-License-Identifier: Apache-2.0 */
/* The task's worktree: cloned from the mirror (objects hard-linked where the filesystem allows),
 * its origin pointed back at the repository's real URL (the mirror's path means nothing in the
 * guest), and checked out at the base commit on branch cordon/<task-id>. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "workspace.h"
#include "ws_git.h"
#include "ws_internal.h"

static int resolve(git_repository *mirror, const char *url, const char *ref, git_oid *out,
                   cdn_err **err) {
    _cleanup_(git_object_freep) git_object *obj = NULL;
    _cleanup_(git_object_freep) git_object *commit = NULL;
    /* Only names a person would write: no revision expressions reaching into reflogs or paths. */
    if (!*ref || strpbrk(ref, " ~^:{}\\") || ref[0] == '-')
        return cdn_err_set(err, EINVAL, "ref '%s' is not a branch, tag or commit SHA", ref);
    if (git_revparse_single(&obj, mirror, ref) < 0)
        return cdn_err_set(err, ENOENT, "ref '%s' not found in %s (a branch, tag or commit SHA)",
                           ref, url);
    if (git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) < 0)
        return cdn_err_set(err, EINVAL, "ref '%s' in %s does not name a commit", ref, url);
    git_oid_cpy(out, git_object_id(commit));
    return 0;
}

/* A local path is used as an absolute path; anything else is a URL libgit2 understands. */
static char *normalise(const char *repo) {
    struct stat st;
    if (!strstr(repo, "://") && stat(repo, &st) == 0 && S_ISDIR(st.st_mode))
        return realpath(repo, NULL);
    return strdup(repo);
}

int cdn_workspace_open(const struct cdn_workspace_opts *o, struct cdn_workspace **out,
                       cdn_err **err) {
    ws_git_init();
    if (!o->repo || !*o->repo)
        return cdn_err_set(err, EINVAL, "no repository given");
    if (!o->task_id || !*o->task_id || !o->dir || !o->state_dir)
        return cdn_err_set(err, EINVAL, "workspace: task id, folder and state folder are required");
    _cleanup_(cdn_workspace_freep) struct cdn_workspace *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return cdn_err_set(err, ENOMEM, "out of memory");
    ws->url = normalise(o->repo);
    ws->path = strdup(o->dir);
    if (!ws->url || !ws->path || asprintf(&ws->branch, "cordon/%s", o->task_id) < 0)
        return cdn_err_set(err, errno ? errno : ENOMEM, "repository %s: %m", o->repo);
    char repos[4200];
    snprintf(repos, sizeof(repos), "%s/repos", o->state_dir);
    _cleanup_free_ char *mirror_path = NULL;
    int r = ws_mirror_sync(repos, ws->url, &mirror_path, err);
    if (r < 0)
        return r;
    _cleanup_(git_repository_freep) git_repository *mirror = NULL;
    if (git_repository_open_bare(&mirror, mirror_path) < 0)
        return ws_git_err(err, "opening the mirror %s", mirror_path);
    git_oid base;
    if ((r = resolve(mirror, ws->url, o->ref ? o->ref : "HEAD", &base, err)) < 0)
        return r;
    git_oid_tostr(ws->base, sizeof(ws->base), &base);

    git_clone_options co = GIT_CLONE_OPTIONS_INIT;
    co.checkout_opts.checkout_strategy = GIT_CHECKOUT_NONE;
    co.local = GIT_CLONE_LOCAL;
    if (git_clone(&ws->repo, mirror_path, ws->path, &co) < 0)
        return ws_git_err(err, "cloning %s into %s", mirror_path, ws->path);
    if (git_remote_set_url(ws->repo, "origin", ws->url) < 0)
        return ws_git_err(err, "setting origin of %s", ws->path);
    _cleanup_(git_commit_freep) git_commit *commit = NULL;
    _cleanup_(git_reference_freep) git_reference *branch = NULL;
    char head[300];
    snprintf(head, sizeof(head), "refs/heads/%s", ws->branch);
    git_checkout_options cko = GIT_CHECKOUT_OPTIONS_INIT;
    cko.checkout_strategy = GIT_CHECKOUT_FORCE;
    if (git_commit_lookup(&commit, ws->repo, &base) < 0 ||
        git_branch_create(&branch, ws->repo, ws->branch, commit, 0) < 0 ||
        git_checkout_tree(ws->repo, (const git_object *)commit, &cko) < 0 ||
        git_repository_set_head(ws->repo, head) < 0)
        return ws_git_err(err, "checking out %s at %s in %s", ws->branch, ws->base, ws->path);
    *out = TAKE_PTR(ws);
    return 0;
}

int cdn_workspace_reset(struct cdn_workspace *ws, cdn_err **err) {
    git_oid base;
    if (git_oid_fromstr(&base, ws->base) < 0)
        return ws_git_err(err, "reading the base commit %s", ws->base);
    _cleanup_(git_commit_freep) git_commit *commit = NULL;
    if (git_commit_lookup(&commit, ws->repo, &base) < 0)
        return ws_git_err(err, "looking up the base commit %s in %s", ws->base, ws->path);
    /* The task branch (HEAD) back at the base, the files too, and nothing else left over. */
    git_checkout_options cko = GIT_CHECKOUT_OPTIONS_INIT;
    cko.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_REMOVE_UNTRACKED;
    if (git_reset(ws->repo, (const git_object *)commit, GIT_RESET_HARD, &cko) < 0)
        return ws_git_err(err, "resetting %s to %s in %s", ws->branch, ws->base, ws->path);
    return 0;
}

void cdn_workspace_free(struct cdn_workspace *ws) {
    if (!ws)
        return;
    git_repository_free(ws->repo);
    free(ws->url);
    free(ws->path);
    free(ws->branch);
    free(ws);
}

void cdn_workspace_freep(struct cdn_workspace **ws) {
    cdn_workspace_free(*ws);
    *ws = NULL;
}

const char *cdn_workspace_path(const struct cdn_workspace *ws) { return ws->path; }
const char *cdn_workspace_base(const struct cdn_workspace *ws) { return ws->base; }
const char *cdn_workspace_branch(const struct cdn_workspace *ws) { return ws->branch; }
const char *cdn_workspace_url(const struct cdn_workspace *ws) { return ws->url; }
