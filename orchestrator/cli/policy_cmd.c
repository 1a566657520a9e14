/* SPDX-License-Identifier: Apache-2.0 */
/* cordon policy check FILE... and cordon policy explain FILE -- CMD...: a policy's errors with
 * their positions, and what it would decide for a command and why. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "policy.h"

static void usage(FILE *f) {
    fputs("usage: cordon policy check FILE...\n"
          "       cordon policy explain FILE -- CMD [ARGS...]\n"
          "\n"
          "check    parses each policy; prints FILE:LINE:COL: message for the first mistake in\n"
          "         each, and exits 1 if any has one\n"
          "explain  prints the decision (allow, approve, deny) for each simple command CMD would\n"
          "         run (shell strings such as bash -lc \"a && b\" are split), the rule that made\n"
          "         it, and the overall decision (the strictest); exits 0 for allow, 2 for\n"
          "         approve, 3 for deny\n",
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

int cli_policy(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_FAILURE : 0;
    }
    if (!strcmp(argv[1], "check"))
        return check(argc - 2, argv + 2);
    if (!strcmp(argv[1], "explain"))
        return explain(argc - 2, argv + 2);
    fprintf(stderr, "cordon policy: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_FAILURE;
}
