/* SPDX-License-Identifier: Apache-2.0 */
/* The review gate through cordond and the cordon CLI, on real VMs and real git repositories: a
 * sandbox whose work changed its repository ends awaiting review; `cordon review` shows the diff's
 * size, the commands and how they ended, the refused one and the approval given; a rejection
 * leaves the target branch of a bare repository (made here) untouched, an approval pushes the
 * task branch there, and a merge: branch policy fast-forwards a local branch of the sandbox's own
 * repository; each decision with the reviewer is on the audit trail, which still verifies against
 * its re-signed manifest. A policy with review.required: false does not gate. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "cordon_cli.h"
#include "cordond.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

struct env {
    char *dir;
    char sock[4200], addr[4300], repo[4200], bare[4200], tasks[4300];
    pid_t daemon;
    struct cdn_vm_host *host;
};

#define CLI(tag, sub, ...) TH_CLI(e, tag, sub, __VA_ARGS__)
#define CLI_OK(tag, sub, ...) TH_CLI_OK(e, tag, sub, __VA_ARGS__)

/* A policy file in the test's folder: everything allowed but sudo, then review (YAML). */
static char *policy(const struct env *e, const char *name, const char *review) {
    char *path = NULL;
    if (asprintf(&path, "%s/%s.yaml", e->dir, name) < 0)
        FAIL("out of memory");
    char text[6000];
    snprintf(text, sizeof(text),
             "version: 1\ncommands:\n  default: allow\n  unanalysable: allow\n  rules:\n"
             "    - match: \"sudo **\"\n      action: deny\n      reason: no root\n%s",
             review);
    th_write_file(path, text, 0644);
    return path;
}

/* git -C REPO rev-parse REF (the test fails if it cannot). */
static char *rev(const char *repo, const char *ref) {
    char cmd[4600];
    snprintf(cmd, sizeof(cmd), "git -C %s rev-parse %s", repo, ref);
    FILE *p = popen(cmd, "r");
    char buf[64] = "";
    if (!p || !fgets(buf, sizeof(buf), p))
        FAIL("%s: no answer", cmd);
    pclose(p);
    buf[strcspn(buf, "\n")] = '\0';
    return strdup(buf);
}

/* A sandbox on the repository under policy: its work done (a change, a failing command, a
 * refused one), then stopped; its id. */
static char *work(struct env *ep, const char *pol, const char *change) {
    struct env e = *ep;
    struct th_ran r = CLI_OK("create", "create", "--repo", e.repo, "--ref", "main", "--policy", pol,
                             "--wait", "--json");
    char *id = th_json_str(r.out, "id");
    th_ran_free(&r);
    r = CLI_OK("change", "exec", id, "--", "sh", "-c", change);
    th_ran_free(&r);
    r = CLI("fails", "exec", id, "--", "sh", "-c", "echo tests failed; exit 3");
    ASSERT_EQ(r.code, 3);
    th_ran_free(&r);
    r = CLI("refused", "exec", id, "--", "sudo", "id");
    ASSERT_EQ(r.code, 126);
    th_ran_free(&r);
    r = CLI_OK("stop", "stop", "--json", id);
    th_ran_free(&r);
    return id;
}

static char *show_field(struct env *ep, const char *id, const char *key) {
    struct env e = *ep;
    struct th_ran r = CLI_OK("show", "show", "--json", id);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    json_t *sb = json_object_get(o, "sandbox");
    json_t *v = json_object_get(sb ? sb : o, key);
    char *out = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_COMPACT);
    json_decref(o);
    th_ran_free(&r);
    return out;
}

TEST_T(rejected_results_stay_out_approved_ones_are_pushed_or_merged, 600) {
    struct env e = {0};
    e.dir = th_tmpdir();
    snprintf(e.sock, sizeof(e.sock), "%s/cordond.sock", e.dir);
    snprintf(e.addr, sizeof(e.addr), "unix:%s", e.sock);
    snprintf(e.repo, sizeof(e.repo), "%s/repo", e.dir);
    snprintf(e.bare, sizeof(e.bare), "%s/published.git", e.dir);
    snprintf(e.tasks, sizeof(e.tasks), "%s/daemon/tasks", e.dir);
    th_sh("git init -q -b main %s && cd %s && printf 'one\\ntwo\\n' > README && git add . && "
          "git -c user.name=t -c user.email=t@t commit -qm init && git branch integration && "
          "git clone -q --bare %s %s",
          e.repo, e.repo, e.repo, e.bare);
    _cleanup_free_ char *base = rev(e.bare, "main");
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e.dir);
    e.host = th_host_hold(daemons);
    e.daemon = th_cordond_start(e.dir, e.sock, "tcg", (const char *[]){"--max-running", "2", NULL});
    char review[4600];
    snprintf(review, sizeof(review),
             "review:\n  required: true\n  merge: push\n  remote: %s\n  branch: main\n", e.bare);
    _cleanup_free_ char *push = policy(&e, "push", review);

    /* Rejected: awaiting review first, with what a reviewer needs; then nothing leaves. */
    _cleanup_free_ char *a = work(&e, push, "echo three >> README; echo new > NEW");
    _cleanup_free_ char *st = show_field(&e, a, "state");
    ASSERT_STREQ(st, "awaiting_review");
    struct th_ran r = CLI_OK("ls", "ls", "--state", "awaiting_review");
    ASSERT_CONTAINS(r.out, a);
    th_ran_free(&r);
    r = CLI_OK("review", "review", a);
    ASSERT_CONTAINS(r.out, "diff: 2 files changed, 2 insertions(+)");
    ASSERT_CONTAINS(r.out, "exit 3     sh -c echo tests failed; exit 3");
    ASSERT_CONTAINS(r.out, "refused    sudo id");
    ASSERT_CONTAINS(r.out, "decide: cordon review approve");
    th_ran_free(&r);
    r = CLI_OK("review-json", "review", "--json", a);
    ASSERT_CONTAINS(r.out, "\"failed\":[{\"argv\"");
    ASSERT_CONTAINS(r.out, "\"egress\":{\"allowed\":0,\"denied\":0");
    th_ran_free(&r);
    r = CLI_OK("reject", "review", "reject", a, "--comment", "not like this");
    ASSERT_CONTAINS(r.out, "rejected by uid:0");
    th_ran_free(&r);
    _cleanup_free_ char *after_reject = rev(e.bare, "main");
    ASSERT_STREQ(after_reject, base);
    r = CLI("twice", "review", "approve", a);
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "rejected already by uid:0");
    th_ran_free(&r);

    /* Approved: the task branch pushed to the bare repository's main. */
    _cleanup_free_ char *b = work(&e, push, "echo four >> README");
    r = CLI_OK("approve", "review", "approve", b, "--comment", "ship it");
    ASSERT_CONTAINS(r.out, "approved by uid:0: pushed to");
    th_ran_free(&r);
    _cleanup_free_ char *result = show_field(&e, b, "result_commit");
    _cleanup_free_ char *published = rev(e.bare, "main");
    ASSERT_STREQ(published, result);
    th_sh("git -C %s show main:README | grep -qx four", e.bare);
    _cleanup_free_ char *stb = show_field(&e, b, "state");
    ASSERT_STREQ(stb, "stopped");

    /* merge: branch: a local branch of the sandbox's own repository, fast-forwarded. */
    _cleanup_free_ char *merge =
        policy(&e, "merge", "review:\n  required: true\n  merge: branch\n  branch: integration\n");
    _cleanup_free_ char *c = work(&e, merge, "echo five >> README");
    r = CLI_OK("merge", "review", "approve", c);
    ASSERT_CONTAINS(r.out, "merged into");
    th_ran_free(&r);
    _cleanup_free_ char *cres = show_field(&e, c, "result_commit");
    _cleanup_free_ char *integ = rev(e.repo, "integration");
    ASSERT_STREQ(integ, cres);
    _cleanup_free_ char *main_after = rev(e.repo, "main");
    ASSERT_STREQ(main_after, base); /* the checked-out branch is not touched */

    /* Each decision on the audit trail with its reviewer; the re-signed trail verifies. */
    const char *ids[] = {a, b, c};
    const char *want[] = {"\"review.rejected\"", "\"review.approved\"", "\"review.approved\""};
    for (int i = 0; i < 3; i++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s/evidence/audit.jsonl", e.tasks, ids[i]);
        _cleanup_free_ char *audit = th_read_file(path);
        ASSERT_CONTAINS(audit, "\"review.awaiting\"");
        ASSERT_CONTAINS(audit, want[i]);
        ASSERT_CONTAINS(audit, "\"by\":\"uid:0\"");
        th_sh("%s audit verify --state %s/daemon %s/%s/evidence >/dev/null", th_cordon_bin(), e.dir,
              e.tasks, ids[i]);
    }
    _cleanup_free_ char *audit_a = NULL;
    {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s/evidence/audit.jsonl", e.tasks, a);
        audit_a = th_read_file(path);
    }
    ASSERT_CONTAINS(audit_a, "not like this");

    /* review.required: false: the same work ends stopped, nothing waits. */
    _cleanup_free_ char *free_pol = policy(&e, "nogate", "review:\n  required: false\n");
    _cleanup_free_ char *d = work(&e, free_pol, "echo six >> README");
    _cleanup_free_ char *std = show_field(&e, d, "state");
    ASSERT_STREQ(std, "stopped");
    r = CLI("not-awaiting", "review", "approve", d);
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "not awaiting review");
    th_ran_free(&r);

    th_cordond_stop(e.daemon);
    th_assert_no_cordon_domains(e.host);
    th_host_release();
    th_rmtree(e.dir);
    free(e.dir);
}
