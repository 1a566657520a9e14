/* SPDX-License-Identifier: Apache-2.0 */
/* The approval store: a request is pending until decided, decided once, listed for others. */
#include <string.h>

#include "approval.h"
#include "cleanup.h"
#include "harness.h"
#include "policy.h"
#include "test.h"

TEST(a_request_is_decided_once_and_visible_to_others) {
    _cleanup_free_ char *state = th_tmpdir();
    const char yaml[] = "version: 1\ncommands:\n  default: approve\n";
    struct cdn_policy *p = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_policy_parse("p.yaml", yaml, strlen(yaml), &p, &err), err);
    const char *argv[] = {"make", "install"};
    struct cdn_policy_decision d;
    ASSERT_OK(cdn_policy_decide(p, argv, 2, &d, &err), err);
    ASSERT_EQ(d.action, CDN_POLICY_APPROVE);
    char id[17];
    ASSERT_OK(cdn_approval_request(state, "task1", argv, 2, &d, id, &err), err);
    json_t *list = NULL;
    ASSERT_OK(cdn_approval_list(state, false, &list, &err), err);
    ASSERT_EQ(json_array_size(list), 1);
    json_t *o = json_array_get(list, 0);
    ASSERT_STREQ(json_string_value(json_object_get(o, "id")), id);
    ASSERT_STREQ(json_string_value(json_object_get(o, "status")), "pending");
    ASSERT_STREQ(json_string_value(json_array_get(
                     json_object_get(json_array_get(json_object_get(o, "parts"), 0), "argv"), 1)),
                 "install");
    json_decref(list);
    enum cdn_approval_status st;
    char *by = NULL;
    ASSERT_OK(cdn_approval_get(state, id, &st, &by, &err), err);
    ASSERT_EQ(st, CDN_APPROVAL_PENDING);
    ASSERT_TRUE(by == NULL);
    ASSERT_OK(cdn_approval_decide(state, id, CDN_APPROVAL_DENIED, "alice@h", &err), err);
    ASSERT_FAILS(cdn_approval_decide(state, id, CDN_APPROVAL_APPROVED, "mallory@h", &err), err,
                 "is already denied by alice@h");
    cdn_err_free(err);
    err = NULL;
    ASSERT_OK(cdn_approval_get(state, id, &st, &by, &err), err);
    ASSERT_EQ(st, CDN_APPROVAL_DENIED);
    ASSERT_STREQ(by, "alice@h");
    free(by);
    ASSERT_OK(cdn_approval_list(state, false, &list, &err), err);
    ASSERT_EQ(json_array_size(list), 0); /* no longer pending */
    json_decref(list);
    ASSERT_OK(cdn_approval_list(state, true, &list, &err), err);
    ASSERT_EQ(json_array_size(list), 1);
    json_decref(list);
    ASSERT_FAILS(cdn_approval_get(state, "../../etc/passwd", &st, NULL, &err), err,
                 "is not an approval id");
    cdn_err_free(err);
    cdn_policy_decision_free(&d);
    cdn_policy_free(p);
    th_rmtree(state);
}
