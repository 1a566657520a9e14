/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_workspace against real repositories made with git by the test: mirrors and refs, and the
 * host-computed result of a task: its diff (edits, deletions, renames, binary files, exec bits)
 * must be exactly what `git apply` needs on a fresh clone at the base. No VM: the "guest's tree"
 * is a folder the test edits, as it arrives on the host after extraction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"
#include "workspace.h"

#define GIT "git -c user.name=t -c user.email=t@t -c init.defaultBranch=main"

/* The output of a shell command, trailing newline cut. */
static char *sh_out(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p)
        FAIL("popen %s", cmd);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, p);
    buf[n] = '\0';
    if (pclose(p) != 0)
        FAIL("command failed: %s", cmd);
    buf[strcspn(buf, "\n")] = '\0';
    return strdup(buf);
}

/* upstream: main has two commits (tag v1 on the first), branch feature one more. */
static void make_upstream(const char *up) {
    th_sh("mkdir -p %s && cd %s && " GIT " init -q . && printf 'one\\n' > a.txt && "
          "printf 'bee\\n' > b.txt && printf 'sea\\nsea\\n' > c.txt && printf '#!/bin/sh\\n' > "
          "s.sh && " GIT " add -A && " GIT " commit -qm first && " GIT " tag v1 && "
          "printf 'two\\n' >> a.txt && " GIT " commit -qam second && " GIT
          " checkout -qb feature && printf 'f\\n' > f.txt && " GIT " add f.txt && " GIT
          " commit -qm feat && " GIT " checkout -q main",
          up, up);
}

static struct cdn_workspace *open_at(const char *state, const char *up, const char *ref,
                                     const char *id, cdn_err **err, int *rc) {
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/tasks/%s/workspace", state, id);
    th_sh("mkdir -p %s/tasks/%s", state, id);
    struct cdn_workspace_opts o = {
        .state_dir = state, .repo = up, .ref = ref, .dir = dir, .task_id = id};
    struct cdn_workspace *ws = NULL;
    *rc = cdn_workspace_open(&o, &ws, err);
    return ws;
}

TEST(refs_resolve_to_commits_and_missing_ones_are_named) {
    _cleanup_free_ char *tmp = th_tmpdir();
    char up[4200], cmd[4400];
    snprintf(up, sizeof(up), "%s/upstream", tmp);
    make_upstream(up);
    cdn_err *err = NULL;
    int rc;
    struct {
        const char *ref, *rev;
    } cases[] = {{"main", "main"}, {"v1", "v1^{commit}"}, {"feature", "feature"}, {NULL, "HEAD"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char id[16];
        snprintf(id, sizeof(id), "t%zu", i);
        struct cdn_workspace *ws = open_at(tmp, up, cases[i].ref, id, &err, &rc);
        ASSERT_OK(rc, err);
        snprintf(cmd, sizeof(cmd), "git -C %s rev-parse '%s'", up, cases[i].rev);
        _cleanup_free_ char *want = sh_out(cmd);
        ASSERT_STREQ(cdn_workspace_base(ws), want);
        /* the worktree is on the task branch, at the base, with a usable .git */
        snprintf(cmd, sizeof(cmd), "git -C %s rev-parse HEAD && git -C %s symbolic-ref HEAD",
                 cdn_workspace_path(ws), cdn_workspace_path(ws));
        _cleanup_free_ char *head = sh_out(cmd);
        ASSERT_STREQ(head, want);
        cdn_workspace_free(ws);
    }
    /* A full SHA, and the origin the guest sees is the real repository, not the mirror. */
    snprintf(cmd, sizeof(cmd), "git -C %s rev-parse v1^{commit}", up);
    _cleanup_free_ char *sha = sh_out(cmd);
    struct cdn_workspace *ws = open_at(tmp, up, sha, "bysha", &err, &rc);
    ASSERT_OK(rc, err);
    ASSERT_STREQ(cdn_workspace_base(ws), sha);
    ASSERT_STREQ(cdn_workspace_branch(ws), "cordon/bysha");
    snprintf(cmd, sizeof(cmd), "git -C %s remote get-url origin", cdn_workspace_path(ws));
    _cleanup_free_ char *origin = sh_out(cmd);
    ASSERT_STREQ(origin, cdn_workspace_url(ws));
    cdn_workspace_free(ws);

    ASSERT_TRUE(!open_at(tmp, up, "nope", "bad1", &err, &rc));
    ASSERT_TRUE(rc < 0);
    ASSERT_CONTAINS(cdn_err_msg(err), "ref 'nope' not found in ");
    cdn_err_free(err);
    err = NULL;
    ASSERT_TRUE(!open_at(tmp, up, "main~1", "bad2", &err, &rc));
    ASSERT_CONTAINS(cdn_err_msg(err), "is not a branch, tag or commit SHA");
    cdn_err_free(err);
    err = NULL;
    snprintf(cmd, sizeof(cmd), "%s/no-such-repo", tmp);
    ASSERT_TRUE(!open_at(tmp, cmd, "main", "bad3", &err, &rc));
    ASSERT_CONTAINS(cdn_err_msg(err), "no-such-repo");
    cdn_err_free(err);

    /* The mirror is fetched on the next task: a new upstream commit is found. */
    th_sh("cd %s && printf 'three\\n' >> a.txt && " GIT " commit -qam third", up);
    snprintf(cmd, sizeof(cmd), "git -C %s rev-parse main", up);
    _cleanup_free_ char *newer = sh_out(cmd);
    err = NULL;
    ws = open_at(tmp, up, "main", "fetched", &err, &rc);
    ASSERT_OK(rc, err);
    ASSERT_STREQ(cdn_workspace_base(ws), newer);
    cdn_workspace_free(ws);
    th_rmtree(tmp);
}

TEST(the_diff_is_computed_on_the_host_and_applies_to_the_base) {
    _cleanup_free_ char *tmp = th_tmpdir();
    char up[4200], result[4200];
    snprintf(up, sizeof(up), "%s/upstream", tmp);
    snprintf(result, sizeof(result), "%s/result", tmp);
    make_upstream(up);
    cdn_err *err = NULL;
    int rc;
    struct cdn_workspace *ws = open_at(tmp, up, "main", "task1", &err, &rc);
    ASSERT_OK(rc, err);
    const char *wt = cdn_workspace_path(ws);

    /* Nothing changed: an empty diff and no commit. */
    th_sh("mkdir -p %s && cd %s && tar --exclude=.git -cf - . | tar -C %s -xf -", result, wt,
          result);
    struct cdn_workspace_result res;
    ASSERT_OK(cdn_workspace_commit_tree(ws, result, NULL, "cordon task task1", &res, &err), err);
    ASSERT_TRUE(!res.changed);
    ASSERT_EQ(res.patch_len, 0);
    ASSERT_STREQ(res.sha, cdn_workspace_base(ws));
    cdn_workspace_result_free(&res);

    /* Edit, delete, rename, a new binary file, an exec bit, a new file in a new folder; and a
     * .git the guest made up, which must not be read. */
    th_sh("cd %s && printf 'changed\\n' >> a.txt && rm b.txt && mv c.txt d.txt && "
          "printf '\\000\\001\\002\\377bin' > blob.bin && chmod +x s.sh && mkdir -p new/deep && "
          "printf 'n\\n' > new/deep/n.txt && mkdir .git && printf 'garbage' > .git/HEAD",
          result);
    ASSERT_OK(cdn_workspace_commit_tree(ws, result, NULL, "cordon task task1", &res, &err), err);
    ASSERT_TRUE(res.changed);
    ASSERT_EQ(res.stats.added, 2);
    ASSERT_EQ(res.stats.deleted, 1);
    ASSERT_EQ(res.stats.renamed, 1);
    ASSERT_EQ(res.stats.modified, 2); /* a.txt, s.sh */
    ASSERT_EQ(res.stats.mode_changed, 1);
    ASSERT_EQ(res.stats.binary, 1);
    ASSERT_CONTAINS(res.patch, "rename from c.txt");
    ASSERT_CONTAINS(res.patch, "new mode 100755");
    ASSERT_CONTAINS(res.patch, "GIT binary patch");
    ASSERT_TRUE(!strstr(res.patch, ".git/"));

    /* `git apply` on a fresh clone at the base reproduces the guest's tree exactly. */
    char patch[4300], fresh[4300];
    snprintf(patch, sizeof(patch), "%s/diff.patch", tmp);
    snprintf(fresh, sizeof(fresh), "%s/fresh", tmp);
    FILE *f = fopen(patch, "w");
    ASSERT_TRUE(f && fwrite(res.patch, 1, res.patch_len, f) == res.patch_len);
    fclose(f);
    th_sh("git clone -q %s %s && cd %s && git checkout -q %s && git apply --check %s && "
          "git apply %s && rm -rf %s/.git && diff -r --exclude=.git . %s && test -x s.sh",
          up, fresh, fresh, cdn_workspace_base(ws), patch, patch, result, result);

    /* The task branch holds the commit, with cordon as its author; the worktree is the result. */
    th_sh("cd %s && test \"$(git rev-parse cordon/task1)\" = %s && "
          "test \"$(git log -1 --format=%%an)\" = cordon && test -z \"$(git status --porcelain)\" "
          "&& diff -r --exclude=.git . %s",
          wt, res.sha, result);
    cdn_workspace_result_free(&res);
    cdn_workspace_free(ws);
    th_rmtree(tmp);
}
