/* SPDX-License-Identifier: Apache-2.0 */
/* cordon pause | resume | reset | extend: a session's life (sandboxes created with --persist). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "remote.h"

struct session_cmd {
    const char *name, *method, *args, *help;
};

static const struct session_cmd cmds[] = {
    {"pause", "Pause", "[--to-disk] ID",
     "Takes the session's result (`cordon diff` is current as of now), then suspends its VM.\n"
     "With --to-disk its memory is saved to a file and the host's memory given back (also done\n"
     "by cordond after pause_to_disk_after_seconds); commands wait until it resumes."},
    {"resume", "Resume", "ID",
     "Runs a paused session again (restored from disk if it was saved), its clock set from the\n"
     "host's; its processes carry on where they were."},
    {"reset", "Reset", "ID",
     "Back to the base commit under the same id: commands killed, the VM replaced, a fresh disk\n"
     "and /workspace at the base commit, the task branch reset."},
    {"extend", "Extend", "ID SECONDS", "Moves the session's expiry to SECONDS from now."},
};

static void print_state(const Cordon__V1__Sandbox *sb) {
    printf("%s %s%s%s\n", sb->id, cli_state_name(sb->state), *sb->paused ? " " : "", sb->paused);
}

static int run(const struct session_cmd *k, int argc, char **argv) {
    static const struct option longopts[] = {{"to-disk", no_argument, NULL, 'D'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    struct cli_remote r;
    cli_remote_init(&r);
    bool to_disk = false;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 'D' && strcmp(k->name, "pause") == 0) {
            to_disk = true;
        } else if (!cli_remote_option(&r, c, optarg)) {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: cordon %s %s [OPTIONS]\n\n%s\n\noptions:\n%s", k->name, k->args,
                    k->help, CLI_REMOTE_USAGE);
            if (c == 'h')
                exit(0);
            return CLI_EXIT_FAILURE;
        }
    }
    bool extend = strcmp(k->name, "extend") == 0;
    if (argc - optind != (extend ? 2 : 1)) {
        fprintf(stderr, "usage: cordon %s %s [OPTIONS]\n", k->name, k->args);
        return CLI_EXIT_FAILURE;
    }
    const char *id = argv[optind];
    /* The four requests share their first field (the id); Pause and Extend add one more. */
    Cordon__V1__PauseRequest pq = CORDON__V1__PAUSE_REQUEST__INIT;
    Cordon__V1__ResumeRequest rq = CORDON__V1__RESUME_REQUEST__INIT;
    Cordon__V1__ResetRequest zq = CORDON__V1__RESET_REQUEST__INIT;
    Cordon__V1__ExtendRequest eq = CORDON__V1__EXTEND_REQUEST__INIT;
    ProtobufCMessage *q;
    if (strcmp(k->name, "pause") == 0) {
        pq.id = (char *)id;
        pq.to_disk = to_disk;
        q = &pq.base;
    } else if (strcmp(k->name, "resume") == 0) {
        rq.id = (char *)id;
        q = &rq.base;
    } else if (strcmp(k->name, "reset") == 0) {
        zq.id = (char *)id;
        q = &zq.base;
    } else {
        char *end;
        errno = 0;
        unsigned long v = strtoul(argv[optind + 1], &end, 10);
        if (errno || *end || end == argv[optind + 1] || v == 0 || v > UINT32_MAX) {
            fprintf(stderr, "cordon extend: SECONDS must be a number from 1, not '%s'\n",
                    argv[optind + 1]);
            return CLI_EXIT_FAILURE;
        }
        eq.id = (char *)id;
        eq.ttl_seconds = (uint32_t)v;
        q = &eq.base;
    }
    /* A reset boots a VM, a resume may restore one from disk: minutes at most. */
    return cli_remote_sandbox_call(k->name, &r, k->method, q, 300000, print_state);
}

int cli_session(int argc, char **argv) {
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(argv[0], cmds[i].name) == 0)
            return run(&cmds[i], argc, argv);
    return CLI_EXIT_FAILURE;
}
