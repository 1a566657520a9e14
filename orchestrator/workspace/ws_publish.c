/* SPDX-License-Identifier: Apache-2.0 */
/* An approved result leaving its worktree: the task branch pushed to a remote (fast-forward
 * only: a branch that moved is not overwritten), or merged into a branch of a repository on this
 * host (its objects fetched in, a fast-forward when the branch is still an ancestor of the task,
 * else a merge commit, refused on conflicts; the branch moved only if nobody moved it
 * meanwhile). Nothing here is forced. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "workspace.h"
#include "ws_git.h"

struct push_ctx {
    const char *token;
    int tries;
    char rejected[512]; /* the remote's refusal of our ref, if any */
};

static int credentials(git_credential **out, const char *url, const char *user, unsigned allowed,
                       void *payload) {
    (void)url;
    (void)user;
    struct push_ctx *p = payload;
    if (!p->token || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) || p->tries++ > 0)
        return GIT_PASSTHROUGH; /* none to give, or given once and refused */
    return git_credential_userpass_plaintext_new(out, "x-access-token", p->token);
}

static int push_status(const char *ref, const char *status, void *payload) {
    struct push_ctx *p = payload;
    if (status)
        snprintf(p->rejected, sizeof(p->rejected), "%s: %s", ref, status);
    return 0;
}

static int push(git_repository *repo, const char *remote, const char *src_ref, const char *target,
                const char *token, cdn_err **err) {
    _cleanup_(git_remote_freep) git_remote *rem = NULL;
    if (git_remote_create_anonymous(&rem, repo, remote) < 0)
        return ws_git_err(err, "the remote %s", remote);
    char spec[600];
    snprintf(spec, sizeof(spec), "%s:refs/heads/%s", src_ref, target);
    char *specs[] = {spec};
    git_strarray refspecs = {specs, 1};
    struct push_ctx p = {.token = token};
    git_push_options o = GIT_PUSH_OPTIONS_INIT;
    o.callbacks.credentials = credentials;
    o.callbacks.push_update_reference = push_status;
    o.callbacks.payload = &p;
    if (git_remote_push(rem, &refspecs, &o) < 0)
        return ws_git_err(err, "pushing to %s as %s", remote, target);
    if (p.rejected[0])
        return cdn_err_set(err, EAGAIN, "%s refused the push of %s: %s", remote, target,
                           p.rejected);
    return 0;
}

/* task merged into the repository at path's branch target (the task's objects fetched from the
 * worktree first). */
static int merge_into(const char *worktree, const char *task_ref, const char *path,
                      const char *target, char sha[41], cdn_err **err) {
    _cleanup_(git_repository_freep) git_repository *repo = NULL;
    if (access(path, F_OK) != 0 ||
        git_repository_open_ext(&repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0)
        return cdn_err_set(err, EINVAL,
                           "review.merge: branch needs the repository to be a path on this host "
                           "(%s is not one): use merge: push",
                           path);
    char head_ref[300];
    snprintf(head_ref, sizeof(head_ref), "refs/heads/%s", target);
    if (!git_repository_is_bare(repo)) {
        _cleanup_(git_reference_freep) git_reference *head = NULL;
        if (git_repository_head(&head, repo) == 0 &&
            strcmp(git_reference_name(head), head_ref) == 0)
            return cdn_err_set(err, EBUSY,
                               "%s is checked out in %s: merging into it would leave its files "
                               "behind; merge into another branch",
                               target, path);
    }
    /* The task's commits, fetched into the repository under a ref of their own. */
    _cleanup_(git_remote_freep) git_remote *src = NULL;
    char spec[900], fetched[400];
    snprintf(fetched, sizeof(fetched), "refs/cordon/review/%s", task_ref + strlen("refs/heads/"));
    snprintf(spec, sizeof(spec), "+%s:%s", task_ref, fetched);
    char *specs[] = {spec};
    git_strarray refspecs = {specs, 1};
    if (git_remote_create_anonymous(&src, repo, worktree) < 0 ||
        git_remote_fetch(src, &refspecs, NULL, NULL) < 0)
        return ws_git_err(err, "fetching %s from %s into %s", task_ref, worktree, path);
    git_oid task, old, result;
    _cleanup_(git_reference_freep) git_reference *tref = NULL, *bref = NULL, *done = NULL;
    if (git_reference_name_to_id(&task, repo, fetched) < 0)
        return ws_git_err(err, "reading %s", fetched);
    if (git_reference_lookup(&bref, repo, head_ref) < 0)
        return cdn_err_set(err, ENOENT, "%s has no branch %s", path, target);
    git_oid_cpy(&old, git_reference_target(bref));
    if (git_oid_equal(&old, &task) || git_graph_descendant_of(repo, &task, &old) == 1) {
        git_oid_cpy(&result, &task); /* a fast-forward */
    } else {
        _cleanup_(git_commit_freep) git_commit *ours = NULL, *theirs = NULL;
        _cleanup_(git_index_freep) git_index *idx = NULL;
        _cleanup_(git_tree_freep) git_tree *tree = NULL;
        _cleanup_(git_signature_freep) git_signature *sig = NULL;
        git_oid tree_id;
        if (git_commit_lookup(&ours, repo, &old) < 0 ||
            git_commit_lookup(&theirs, repo, &task) < 0 ||
            git_merge_commits(&idx, repo, ours, theirs, NULL) < 0)
            return ws_git_err(err, "merging %s into %s", task_ref, target);
        if (git_index_has_conflicts(idx))
            return cdn_err_set(err, EAGAIN,
                               "%s changed since the task's base and the two conflict: not merged",
                               target);
        char msg[600];
        snprintf(msg, sizeof(msg), "Merge %s into %s\n\nApproved in review (cordon).\n",
                 task_ref + strlen("refs/heads/"), target);
        const git_commit *parents[] = {ours, theirs};
        if (git_index_write_tree_to(&tree_id, idx, repo) < 0 ||
            git_tree_lookup(&tree, repo, &tree_id) < 0 ||
            git_signature_now(&sig, "cordon", "cordon@localhost") < 0 ||
            git_commit_create(&result, repo, NULL, sig, sig, NULL, msg, tree, 2, parents) < 0)
            return ws_git_err(err, "committing the merge into %s", target);
    }
    /* Moved only from where it was when we looked: a concurrent change is not overwritten. */
    if (git_reference_create_matching(&done, repo, head_ref, &result, 1, &old,
                                      "cordon: approved in review") < 0)
        return ws_git_err(err, "moving %s in %s", target, path);
    git_oid_tostr(sha, 41, &result);
    return 0;
}

int cdn_workspace_publish(const struct cdn_workspace_publish *p, char sha[41], cdn_err **err) {
    ws_git_init();
    char task_ref[300];
    snprintf(task_ref, sizeof(task_ref), "refs/heads/%s", p->task_branch);
    if (p->merge)
        return merge_into(p->worktree, task_ref, p->remote, p->target, sha, err);
    _cleanup_(git_repository_freep) git_repository *repo = NULL;
    git_oid id;
    if (git_repository_open(&repo, p->worktree) < 0)
        return ws_git_err(err, "opening the worktree %s", p->worktree);
    if (git_reference_name_to_id(&id, repo, task_ref) < 0)
        return ws_git_err(err, "reading %s in %s", task_ref, p->worktree);
    int r = push(repo, p->remote, task_ref, p->target, p->token, err);
    if (r >= 0)
        git_oid_tostr(sha, 41, &id);
    return r;
}
