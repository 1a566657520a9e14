/* SPDX-License-Identifier: Apache-2.0 */
/* cordon gc: cleans up after tasks whose cordon process died without tearing down. `cordon run`
 * does the same sweep before each task; this is for operators and for hosts between batches. */
#include <getopt.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>

#include "cli.h"
#include "task_gc.h"
#include "vm.h"

static void usage(FILE *f) {
    fputs("usage: cordon gc [--state DIR] [--uri URI]\n"
          "\n"
          "Cleans up after tasks whose cordon process died (killed, crashed) without tearing\n"
          "down: destroys their domains if still running, removes their agent sockets and\n"
          "overlay disks, and the folders of interrupted KVM probes. Console logs stay as\n"
          "evidence. Tasks of live processes are never touched.\n"
          "\n"
          "  --state DIR   task folders ($CORDON_STATE, else /var/lib/cordon)\n"
          "  --uri URI     libvirt connection (default qemu:///system)\n",
          f);
}

int cli_gc(int argc, char **argv) {
    static const struct option longopts[] = {{"state", required_argument, NULL, 's'},
                                             {"uri", required_argument, NULL, 'u'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *state = cli_default_state(), *uri = NULL;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        switch (c) {
        case 's': state = optarg; break;
        case 'u': uri = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return CLI_EXIT_FAILURE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cordon gc: unexpected argument '%s'\n", argv[optind]);
        return CLI_EXIT_FAILURE;
    }
    char daemons[4200];
    snprintf(daemons, sizeof(daemons), "%s/run", state);
    struct cdn_vm_host_opts hopts = {.uri = uri, .daemon_dir = daemons};
    cdn_err *err = NULL;
    struct cdn_vm_host *h = NULL;
    struct cdn_task_gc_report rep;
    if (cdn_vm_host_open(&hopts, &h, &err) < 0 || cdn_task_gc(state, h, &rep, &err) < 0) {
        fprintf(stderr, "cordon gc: %s\n", cdn_err_msg(err));
        cdn_err_free(err);
        cdn_vm_host_close(h);
        return CLI_EXIT_FAILURE;
    }
    cdn_vm_host_close(h);
    printf("cordon gc: %u dead task%s cleaned up, %u domain%s destroyed, %u file%s removed, %u "
           "dead run folder%s removed\n",
           rep.tasks, rep.tasks == 1 ? "" : "s", rep.domains, rep.domains == 1 ? "" : "s",
           rep.files, rep.files == 1 ? "" : "s", rep.runs, rep.runs == 1 ? "" : "s");
    /* Then the policies' retention on finished tasks. */
    struct cdn_task_retention_report ret;
    if (cdn_task_retention(state, (int64_t)time(NULL), &ret, &err) < 0) {
        fprintf(stderr, "cordon gc: retention: %s\n", cdn_err_msg(err));
        cdn_err_free(err);
        return CLI_EXIT_FAILURE;
    }
    printf("cordon gc: retention: %u worktree%s and %u task folder%s past their policy's days "
           "removed\n",
           ret.workspaces, ret.workspaces == 1 ? "" : "s", ret.folders,
           ret.folders == 1 ? "" : "s");
    cdn_task_retention_report_clear(&ret);
    return 0;
}
