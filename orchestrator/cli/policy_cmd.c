/* SPDX-License-Identifier: Apache-2.0 */
/* cordon policy check FILE..., cordon policy explain FILE -- CMD... and cordon policy update ID
 * FILE: a policy's errors with their positions, what it would decide for a command and why, and
 * a running sandbox's egress rules replaced (UpdatePolicy). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "cordon.pb-c.h"
#include "fsutil.h"
#include "policy.h"
#include "remote.h"

static void usage(FILE *f) {
    fputs("usage: cordon policy check FILE...\n"
          "       cordon policy explain FILE -- CMD [ARGS...]\n"
          "       cordon policy update [--addr ADDR] [--json] ID FILE\n"
          "\n"
          "check    parses each policy; prints FILE:LINE:COL: message for the first mistake in\n"
          "         each, and exits 1 if any has one\n"
          "explain  prints the decision (allow, approve, deny) for each simple command CMD would\n"
          "         run (shell strings such as bash -lc \"a && b\" are split), the rule that made\n"
          "         it, and the overall decision (the strictest); exits 0 for allow, 2 for\n"
          "         approve, 3 for deny\n"
          "update   replaces running sandbox ID's egress rules with FILE's network.egress (the\n"
          "         rest of FILE is checked, not applied); recorded in its audit trail\n",
          f);
}

static int check(int argc, char **argv) {
    if (argc < 1) {
        usage(stderr);
        return CLI_EXIT_FAILURE;
    }
    int bad = 0;
    for (int i = 0; i < argc; i++) {
        struct cdn_policy *p = NULL;
        cdn_err *err = NULL;
        if (cdn_policy_load(argv[i], &p, &err) < 0) {
            fprintf(stderr, "%s\n", cdn_err_msg(err));
            cdn_err_free(err);
            bad = 1;
            continue;
        }
        printf("%s: ok\n", argv[i]);
        cdn_policy_free(p);
    }
    return bad;
}

static int explain(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[1], "--") != 0) {
        usage(stderr);
        return CLI_EXIT_FAILURE;
    }
    struct cdn_policy *p = NULL;
    cdn_err *err = NULL;
    if (cdn_policy_load(argv[0], &p, &err) < 0) {
        fprintf(stderr, "%s\n", cdn_err_msg(err));
        cdn_err_free(err);
        return CLI_EXIT_FAILURE;
    }
    struct cdn_policy_decision d;
    if (cdn_policy_decide(p, (const char *const *)argv + 2, (size_t)argc - 2, &d, &err) < 0) {
        fprintf(stderr, "cordon policy explain: %s\n", cdn_err_msg(err));
        cdn_err_free(err);
        cdn_policy_free(p);
        return CLI_EXIT_FAILURE;
    }
    for (size_t i = 0; i < d.n; i++) {
        const struct cdn_policy_part *pt = &d.parts[i];
        printf("%-8s", cdn_policy_action_name(pt->action));
        for (size_t j = 0; j < pt->argc; j++)
            printf(" %s", pt->argv[j]);
        printf("\n         by %s%s%s\n", pt->rule, pt->reason ? ": " : "",
               pt->reason ? pt->reason : "");
    }
    printf("decision: %s\n", cdn_policy_action_name(d.action));
    int code = d.action == CDN_POLICY_ALLOW ? 0 : d.action == CDN_POLICY_APPROVE ? 2 : 3;
    cdn_policy_decision_free(&d);
    cdn_policy_free(p);
    return code;
}

static int update(int argc, char **argv) {
    struct cli_remote r;
    if (cli_remote_parse(argc, argv, &r, "usage: cordon policy update [OPTIONS] ID FILE\n") < 0)
        return CLI_EXIT_FAILURE;
    if (argc - optind != 2) {
        usage(stderr);
        return CLI_EXIT_FAILURE;
    }
    const char *id = argv[optind], *file = argv[optind + 1];
    _cleanup_free_ char *text = NULL;
    size_t len;
    cdn_err *err = NULL;
    struct cdn_policy *p = NULL;
    /* checked here first: the mistake is named with the file's own name */
    if (cdn_read_file(file, CDN_POLICY_MAX_BYTES, &text, &len, &err) < 0 ||
        cdn_policy_parse(file, text, len, &p, &err) < 0) {
        fprintf(stderr, "cordon policy update: %s\n", cdn_err_msg(err));
        cdn_err_free(err);
        return CLI_EXIT_FAILURE;
    }
    cdn_policy_free(p);
    Cordon__V1__UpdatePolicyRequest q = CORDON__V1__UPDATE_POLICY_REQUEST__INIT;
    q.sandbox_id = (char *)id;
    q.policy_yaml = text;
    ProtobufCMessage *m = NULL;
    int rc = cli_remote_unary("policy update", &r, "UpdatePolicy", &q.base,
                              &cordon__v1__update_policy_response__descriptor, &m);
    if (rc != 0)
        return rc;
    Cordon__V1__UpdatePolicyResponse *u = (Cordon__V1__UpdatePolicyResponse *)m;
    if (r.json)
        cli_json_print(json_pack("{s:s, s:s, s:i}", "id", id, "policy_sha256", u->policy_sha256,
                                 "egress_rules", (int)u->egress_rules));
    else
        printf("%s: %u egress rule%s from %s (sha256 %s)\n", id, u->egress_rules,
               u->egress_rules == 1 ? "" : "s", file, u->policy_sha256);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int cli_policy(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_FAILURE : 0;
    }
    /* `cordon policy --addr A update ...`: the remote options may come before the subcommand */
    for (int k = 2; argv[1][0] == '-' && k < argc; k++)
        if (!strcmp(argv[k], "update")) {
            char *u = argv[k];
            memmove(argv + 2, argv + 1, (size_t)(k - 1) * sizeof(char *));
            argv[1] = u;
            break;
        }
    if (!strcmp(argv[1], "check"))
        return check(argc - 2, argv + 2);
    if (!strcmp(argv[1], "explain"))
        return explain(argc - 2, argv + 2);
    if (!strcmp(argv[1], "update"))
        return update(argc - 1, argv + 1);
    fprintf(stderr, "cordon policy: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_FAILURE;
}
