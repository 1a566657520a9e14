/* SPDX-License-Identifier: Apache-2.0 */
/* cordon: dispatches to one file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frame.h"
#include "remote.h"

static void usage(FILE *f) {
    fputs(
        "usage: cordon COMMAND [OPTIONS]\n"
        "\n"
        "Runs untrusted work in a fresh microVM per task.\n"
        "\n"
        "one task, start to end:\n"
        "  run [OPTIONS] -- CMD [ARGS...]   run CMD in a new VM; `cordon run --help` for options\n"
        "  batch FILE.jsonl                many tasks through cordond, a line each; resumable\n"
        "  policy check FILE...            check policies: FILE:LINE:COL for each mistake\n"
        "  policy explain FILE -- CMD...   what a policy decides for CMD, part by part, and why\n"
        "  policy update ID FILE           replace a running sandbox's egress rules\n"
        "  gc [--state DIR]                clean up after tasks whose cordon process died\n"
        "  audit verify|show TASK|DIR      check a task's signed audit trail, or print it\n"
        "\n"
        "sandboxes kept by cordond (--addr, $CORDON_ADDR, default " CDN_CLIENT_DEFAULT_ADDR "):\n"
        "  create [OPTIONS]                a sandbox on a repository, under a policy; prints its "
        "id\n"
        "                                  (--persist: a session, with an owner and an expiry)\n"
        "  exec ID -- CMD [ARGS...]        run CMD in it, streaming its output (--detach: in\n"
        "                                  the background, its handle printed)\n"
        "  ps ID | logs [--follow] ID H | kill ID H [SIG]  its background processes\n"
        "  cp LOCAL ID:PATH | ID:PATH LOCAL  copy a file in or out\n"
        "  diff ID                         the patch it made (git apply-able on its base)\n"
        "  show ID                         its record and evidence\n"
        "  ls [--state S] [--label K=V]    the caller's sandboxes (sessions: owner, expiry)\n"
        "  ls ID:PATH                      a folder in a sandbox\n"
        "  pause [--to-disk] ID | resume ID  a session suspended (its memory on disk) and back\n"
        "  reset ID                        a session back at its base commit, same id\n"
        "  extend ID SECONDS               a session's expiry moved to SECONDS from now\n"
        "  preview ID PORT | --close ID PORT  a guest port its policy lists, on 127.0.0.1\n"
        "  review ID                       what a reviewer needs of a result awaiting review\n"
        "  review approve|reject ID        decide it (approve pushes/merges per its policy)\n"
        "  approvals [--all]               commands waiting for a person's approval\n"
        "  approve ID | deny ID            decide one (the first decision stands)\n"
        "  stop ID... | rm ID...           destroy its VM (rm: and forget it)\n"
        "  events [--sandbox ID]           state changes as they happen\n"
        "every one of these takes --json. show and diff read a local state folder (`cordon\n"
        "run`'s tasks) with --state DIR, or when no daemon is there; approvals, approve and deny\n"
        "then ask the state folder's running `cordon run`s.\n"
        "\n"
        "  mcp [OPTIONS]                   a Model Context Protocol server on stdio whose tools\n"
        "                                  work in sandboxes (docs/mcp.md)\n"
        "  version                         print the version and protocol\n",
        f);
}

/* Whether a subcommand that has both forms should read local state: --state given, or no
 * daemon to ask. */
static bool local_form(int argc, char **argv) {
    struct cli_remote r;
    cli_remote_init(&r);
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--state", 7) == 0)
            return true;
        if (strncmp(argv[i], "--addr", 6) == 0)
            return false;
    }
    return !cli_remote_wanted(&r);
}

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    int (*local)(int argc, char **argv); /* the local-state form, when it has one */
};

static const struct subcommand subcommands[] = {
    {"run", cli_run, NULL},
    {"batch", cli_batch, NULL},
    {"policy", cli_policy, NULL},
    {"audit", cli_audit, NULL},
    {"gc", cli_gc, NULL},
    {"create", cli_create, NULL},
    {"exec", cli_exec, NULL},
    {"cp", cli_cp, NULL},
    {"ls", cli_ls, NULL},
    {"stop", cli_stop, NULL},
    {"pause", cli_session, NULL},
    {"resume", cli_session, NULL},
    {"reset", cli_session, NULL},
    {"extend", cli_session, NULL},
    {"ps", cli_ps, NULL},
    {"logs", cli_logs, NULL},
    {"kill", cli_kill, NULL},
    {"review", cli_review, NULL},
    {"preview", cli_preview, NULL},
    {"mcp", cli_mcp, NULL},
    {"rm", cli_rm, NULL},
    {"events", cli_events, NULL},
    {"show", cli_show_remote, cli_show},
    {"diff", cli_diff_remote, cli_diff},
    {"approvals", cli_approvals, NULL},
    {"approve", cli_approve, NULL},
    {"deny", cli_deny, NULL},
};

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_FAILURE;
    }
    const char *cmd = argv[1];
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        const struct subcommand *s = &subcommands[i];
        if (strcmp(cmd, s->name) != 0)
            continue;
        if (s->local && local_form(argc - 1, argv + 1))
            return s->local(argc - 1, argv + 1);
        return s->run(argc - 1, argv + 1);
    }
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
