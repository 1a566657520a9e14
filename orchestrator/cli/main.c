/* SPDX-License-Identifier: Apache-2.0 */
/* cordon: dispatches to one file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frame.h"

static void usage(FILE *f) {
    fputs(
        "usage: cordon COMMAND [OPTIONS]\n"
        "\n"
        "Runs untrusted work in a fresh microVM per task.\n"
        "\n"
        "commands:\n"
        "  run [OPTIONS] -- CMD [ARGS...]   run CMD in a new VM; `cordon run --help` for options\n"
        "  show [--json] TASK              a task's evidence: facts, commands, diff, artifacts\n"
        "  diff TASK                       the patch a task made (git apply-able on its base)\n"
        "  policy check FILE...            check policies: FILE:LINE:COL for each mistake\n"
        "  policy explain FILE -- CMD...   what a policy decides for CMD, part by part, and why\n"
        "  approvals [--all] [--json]      commands waiting for a person's approval\n"
        "  approve ID | deny ID            decide one (the first decision stands)\n"
        "  gc [--state DIR]                clean up after tasks whose cordon process died\n"
        "  version                         print the version and protocol\n",
        f);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_FAILURE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cli_run(argc - 1, argv + 1);
    if (strcmp(cmd, "show") == 0)
        return cli_show(argc - 1, argv + 1);
    if (strcmp(cmd, "diff") == 0)
        return cli_diff(argc - 1, argv + 1);
    if (strcmp(cmd, "policy") == 0)
        return cli_policy(argc - 1, argv + 1);
    if (strcmp(cmd, "approvals") == 0)
        return cli_approvals(argc - 1, argv + 1);
    if (strcmp(cmd, "approve") == 0)
        return cli_approve(argc - 1, argv + 1);
    if (strcmp(cmd, "deny") == 0)
        return cli_deny(argc - 1, argv + 1);
    if (strcmp(cmd, "gc") == 0)
        return cli_gc(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("cordon 0.1.0 (agent protocol %u)\n", CDN_PROTOCOL_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "cordon: unknown command '%s'\n", cmd);
    usage(stderr);
    return CLI_EXIT_FAILURE;
}
