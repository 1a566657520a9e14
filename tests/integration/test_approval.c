/* SPDX-License-Identifier: Apache-2.0 */
/* Approvals in cordond's store (a real SQLite file): a request made from the policy's decision is
 * pending until decided, decided once (of racing deciders in two processes, one wins), seen and
 * decided only by its sandbox's tenant, expired by a restart, gone with its sandbox. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "approval.h"
#include "cleanup.h"
#include "harness.h"
#include "policy.h"
#include "store.h"
#include "test.h"

static int count_cb(void *ud, const struct cdn_store_approval *a) {
    (void)a;
    (*(int *)ud)++;
    return 0;
}

static int count(struct cdn_store *s, const char *tenant, bool all) {
    int n = 0;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_store_approval_list(s, tenant, NULL, all, count_cb, &n, &err), err);
    return n;
}

/* A request for argv as the scheduler makes it: the policy's parts, a fresh id. */
static void request(struct cdn_store *s, const struct cdn_policy *p, const char *sandbox,
                    const char *tenant, char id[17]) {
    const char *argv[] = {"make", "install"};
    struct cdn_policy_decision d;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_policy_decide(p, argv, 2, &d, &err), err);
    ASSERT_EQ(d.action, CDN_POLICY_APPROVE);
    ASSERT_OK(cdn_approval_new_id(id, &err), err);
    json_t *parts = cdn_approval_parts_json(&d);
    _cleanup_free_ char *pj = json_dumps(parts, JSON_COMPACT);
    json_decref(parts);
    struct cdn_store_approval a = {
        .tenant = (char *)tenant, .argv_json = "[\"make\",\"install\"]", .parts_json = pj};
    snprintf(a.id, sizeof(a.id), "%s", id);
    snprintf(a.sandbox, sizeof(a.sandbox), "%s", sandbox);
    ASSERT_OK(cdn_store_approval_add(s, &a, &err), err);
    cdn_policy_decision_free(&d);
}

TEST(a_request_is_decided_once_by_its_tenant_only) {
    _cleanup_free_ char *dir = th_tmpdir();
    char path[4300];
    snprintf(path, sizeof(path), "%s/cordond.db", dir);
    struct cdn_store *s = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_store_open(path, &s, &err), err);
    const char yaml[] = "version: 1\ncommands:\n  default: approve\n";
    struct cdn_policy *p = NULL;
    ASSERT_OK(cdn_policy_parse("p.yaml", yaml, strlen(yaml), &p, &err), err);
    struct cdn_store_sandbox sb = {.tenant = "uid:1000", .image = "minimal"};
    ASSERT_OK(cdn_store_sandbox_create(s, &sb, &err), err);
    char id[17];
    request(s, p, sb.id, "uid:1000", id);
    ASSERT_EQ(strspn(id, "0123456789abcdef"), 16);

    /* pending, with the policy's parts; another tenant sees nothing and cannot decide it */
    struct cdn_store_approval a;
    ASSERT_OK(cdn_store_approval_get(s, "uid:1000", id, &a, &err), err);
    ASSERT_EQ(a.status, CDN_APPROVAL_PENDING);
    ASSERT_CONTAINS(a.parts_json, "\"install\"");
    ASSERT_TRUE(a.decided_by == NULL && a.requested_ms > 0);
    cdn_store_approval_clear(&a);
    ASSERT_EQ(count(s, "uid:1000", false), 1);
    ASSERT_EQ(count(s, "uid:1001", true), 0);
    ASSERT_FAILS(cdn_store_approval_get(s, "uid:1001", id, &a, &err), err, "no approval");
    cdn_err_free(TAKE_PTR(err));
    ASSERT_FAILS(
        cdn_store_approval_decide(s, "uid:1001", id, CDN_APPROVAL_APPROVED, "mallory", &err), err,
        "no approval");
    cdn_err_free(TAKE_PTR(err));

    /* two processes decide at once: exactly one decision stands */
    int wins = 0;
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            struct cdn_store *mine = NULL;
            if (cdn_store_open(path, &mine, NULL) < 0)
                _exit(2);
            int r = cdn_store_approval_decide(mine, "uid:1000", id,
                                              k ? CDN_APPROVAL_APPROVED : CDN_APPROVAL_DENIED,
                                              k ? "bob" : "alice", NULL);
            cdn_store_close(mine);
            _exit(r == 0 ? 0 : r == -EALREADY ? 1 : 2);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) < 2);
        wins += WEXITSTATUS(st) == 0;
    }
    ASSERT_EQ(wins, 1);
    ASSERT_OK(cdn_store_approval_get(s, NULL, id, &a, &err), err);
    ASSERT_TRUE(a.status == CDN_APPROVAL_APPROVED || a.status == CDN_APPROVAL_DENIED);
    ASSERT_STREQ(a.decided_by, a.status == CDN_APPROVAL_APPROVED ? "bob" : "alice");
    ASSERT_TRUE(a.decided_ms >= a.requested_ms);
    cdn_store_approval_clear(&a);
    ASSERT_FAILS(cdn_store_approval_decide(s, "uid:1000", id, CDN_APPROVAL_EXPIRED, "nobody", &err),
                 err, "already by");
    cdn_err_free(TAKE_PTR(err));
    ASSERT_EQ(count(s, "uid:1000", false), 0); /* no longer pending */
    ASSERT_EQ(count(s, "uid:1000", true), 1);

    /* a restart expires what was pending (its command went with the old daemon) */
    request(s, p, sb.id, "uid:1000", id);
    ASSERT_OK(cdn_store_recover(s, NULL, NULL, &err), err);
    ASSERT_OK(cdn_store_approval_get(s, NULL, id, &a, &err), err);
    ASSERT_EQ(a.status, CDN_APPROVAL_EXPIRED);
    ASSERT_STREQ(a.decided_by, "nobody (cordond restarted)");
    cdn_store_approval_clear(&a);

    /* and its sandbox's deletion takes them along */
    ASSERT_OK(cdn_store_sandbox_delete(s, "uid:1000", sb.id, &err), err);
    ASSERT_EQ(count(s, NULL, true), 0);
    cdn_store_close(s);
    cdn_policy_free(p);
    th_rmtree(dir);
}
