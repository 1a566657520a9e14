/* SPDX-License-Identifier: Apache-2.0 */
/* cordon exec ID -- CMD: runs a command in a sandbox through cordond, streams its output live (or
 * returns it in --json) and exits with its exit code. Ctrl-C cancels the call, which kills the
 * command's process group in the guest. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "exec_stream.h"

#define STDIN_MAX (16u << 20)

static void usage(FILE *f) {
    fputs("usage: cordon exec [OPTIONS] ID -- CMD [ARGS...]\n"
          "\n"
          "Runs CMD in sandbox ID (see `cordon create`), decided by its policy first; streams\n"
          "its output and exits with its exit code.\n"
          "\n"
          "options:\n"
          "  --env K=V          set an environment variable (repeatable)\n"
          "  --workdir DIR      run in DIR (absolute; default /workspace)\n"
          "  --timeout S        kill its process group after S seconds (exit 124)\n"
          "  --stdin FILE       feed FILE ('-': this stdin) to CMD, up to 16 MiB\n"
          "  --detach           run it in the background: print its handle once it started\n"
          "                     (cordon ps, logs, kill); no timeout unless "
          "--timeout\n" CLI_REMOTE_USAGE "\n"
          "exit codes: CMD's own; 124 timed out; 125 cordon could not run it; 126 the policy\n"
          "refused it or nobody approved it; 128+N killed by signal N; 130 interrupted.\n",
          f);
}

static int read_stdin_file(const char *path, struct cdn_buf *b) {
    _cleanup_fclose_ FILE *f = strcmp(path, "-") == 0 ? fdopen(dup(0), "r") : fopen(path, "re");
    if (!f) {
        fprintf(stderr, "cordon exec: --stdin %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t chunk[65536];
    for (size_t n; (n = fread(chunk, 1, sizeof(chunk), f)) > 0;)
        if (cdn_buf_len(b) + n > STDIN_MAX || cdn_buf_append(b, chunk, n) < 0) {
            fprintf(stderr, "cordon exec: --stdin %s: over 16 MiB\n", path);
            return -1;
        }
    return 0;
}

struct exec_opts {
    struct cli_remote r;
    Cordon__V1__ExecRequest q;
    char *env[CLI_EXEC_MAX_ENV];
    struct cdn_buf in;
};

static int parse(int argc, char **argv, struct exec_opts *o) {
    static const struct option longopts[] = {CLI_EXEC_LONGOPTS,
                                             {"stdin", required_argument, NULL, 'i'},
                                             {"detach", no_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    Cordon__V1__ExecRequest *q = &o->q;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1;) {
        int mine = cli_exec_option("exec", c, optarg, q, o->env);
        if (mine < 0)
            return -1;
        if (mine)
            continue;
        switch (c) {
        case 'i':
            if (read_stdin_file(optarg, &o->in) < 0)
                return -1;
            break;
        case 'd': q->detach = true; break;
        case 'h': usage(stdout); exit(0);
        default:
            if (cli_remote_option(&o->r, c, optarg))
                break;
            usage(stderr);
            return -1;
        }
    }
    if (argc - optind < 2) {
        fprintf(stderr, "usage: cordon exec [OPTIONS] ID -- CMD [ARGS...]\n");
        return -1;
    }
    q->sandbox_id = argv[optind++];
    if (strcmp(argv[optind], "--") == 0)
        optind++; /* ID -- CMD: getopt stopped at ID and left the "--" */
    if (optind == argc) {
        fprintf(stderr, "cordon exec: no command given (cordon exec ID -- CMD [ARGS...])\n");
        return -1;
    }
    q->argv = argv + optind;
    q->n_argv = (size_t)(argc - optind);
    q->stdin.data = (uint8_t *)cdn_buf_head(&o->in);
    q->stdin.len = cdn_buf_len(&o->in);
    return 0;
}

int cli_exec(int argc, char **argv) {
    struct exec_opts o = {0};
    cli_remote_init(&o.r);
    cordon__v1__exec_request__init(&o.q);
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (parse(argc, argv, &o) < 0 || cli_remote_open("exec", &o.r, &c) < 0) {
        cdn_buf_free(&o.in);
        return CLI_EXIT_FAILURE;
    }
    cli_catch_interrupts();
    struct cli_exec x = {.cmd = "exec", .json = o.r.json};
    cdn_err *err = NULL;
    int rc = cli_exec_stream(c, &o.q, &x, &cli_interrupted, &err);
    cdn_buf_free(&o.in);
    int code = rc < 0 ? cli_remote_fail("exec", rc, err) : x.handle[0] ? 0 : cli_exec_code(&x);
    if (rc >= 0 && x.handle[0]) {
        if (o.r.json)
            cli_json_print(json_pack("{s:s, s:s}", "sandbox", o.q.sandbox_id, "handle", x.handle));
        else
            printf("%s\n", x.handle);
    } else if (rc >= 0 && o.r.json)
        cli_json_print(cli_exec_json(&x, code));
    else if (rc >= 0 && x.exit.timed_out)
        fprintf(stderr, "cordon exec: command timed out after %u s; its process group was killed\n",
                o.q.timeout_seconds);
    cli_exec_free(&x);
    return code;
}
