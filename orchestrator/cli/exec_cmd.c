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
#include "remote.h"

#define MAX_ENV 256
#define STDIN_MAX (16u << 20)
#define JSON_OUTPUT_LIMIT (16u << 20)

static volatile sig_atomic_t interrupted;
static void on_signal(int signo) {
    (void)signo;
    interrupted = 1;
}

struct exec_ctx {
    bool json;
    struct cdn_buf out[3];
    bool truncated_locally;
    Cordon__V1__Exit exit;
    bool exited;
    char approval[64];
};

static void print_pending(const Cordon__V1__Approval *a) {
    fprintf(stderr, "cordon: approval needed (request %s):\n", a->id);
    for (size_t i = 0; i < a->n_parts; i++) {
        const Cordon__V1__ApprovalPart *p = a->parts[i];
        fprintf(stderr, "  %-8s", p->action);
        for (size_t j = 0; j < p->n_argv; j++)
            fprintf(stderr, " %s", p->argv[j]);
        fprintf(stderr, "\n           by %s%s%s\n", p->rule, *p->reason ? ": " : "", p->reason);
    }
    fprintf(stderr, "cordon: waiting; decide with `cordon approve %s` or `cordon deny %s`\n", a->id,
            a->id);
}

static int on_event(void *ud, const ProtobufCMessage *msg) {
    struct exec_ctx *x = ud;
    const Cordon__V1__ExecEvent *ev = (const Cordon__V1__ExecEvent *)msg;
    switch (ev->event_case) {
    case CORDON__V1__EXEC_EVENT__EVENT_OUTPUT: {
        const Cordon__V1__Output *o = ev->output;
        int fd = o->fd == 2 ? 2 : 1;
        if (!x->json) {
            for (size_t off = 0; off < o->data.len;) {
                ssize_t w = write(fd, o->data.data + off, o->data.len - off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    break; /* a closed terminal must not stop the stream */
                off += (size_t)w;
            }
        } else if (cdn_buf_len(&x->out[1]) + cdn_buf_len(&x->out[2]) + o->data.len >
                   JSON_OUTPUT_LIMIT) {
            x->truncated_locally = true;
        } else if (cdn_buf_append(&x->out[fd], o->data.data, o->data.len) < 0) {
            return -ENOMEM;
        }
        return 0;
    }
    case CORDON__V1__EXEC_EVENT__EVENT_APPROVAL_PENDING:
        if (ev->approval_pending->approval) {
            snprintf(x->approval, sizeof(x->approval), "%s", ev->approval_pending->approval->id);
            print_pending(ev->approval_pending->approval);
        }
        return 0;
    case CORDON__V1__EXEC_EVENT__EVENT_EXIT:
        x->exit = *ev->exit;
        x->exited = true;
        return 0;
    default: return 0;
    }
}

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
          "  --stdin FILE       feed FILE ('-': this stdin) to CMD, up to 16 MiB\n" CLI_REMOTE_USAGE
          "\n"
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
    char *env[MAX_ENV];
    struct cdn_buf in;
};

static int parse(int argc, char **argv, struct exec_opts *o) {
    static const struct option longopts[] = {{"env", required_argument, NULL, 'e'},
                                             {"workdir", required_argument, NULL, 'w'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"stdin", required_argument, NULL, 'i'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    Cordon__V1__ExecRequest *q = &o->q;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1;) {
        char *end;
        switch (c) {
        case 'e':
            if (q->n_env == MAX_ENV || !strchr(optarg, '=') || optarg[0] == '=') {
                fprintf(stderr, "cordon exec: --env takes KEY=VALUE (at most %d), not '%s'\n",
                        MAX_ENV, optarg);
                return -1;
            }
            o->env[q->n_env++] = optarg;
            break;
        case 'w': q->cwd = optarg; break;
        case 't':
            q->timeout_seconds = (uint32_t)strtoul(optarg, &end, 10);
            if (*end || end == optarg || !q->timeout_seconds) {
                fprintf(stderr, "cordon exec: --timeout takes seconds, not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'i':
            if (read_stdin_file(optarg, &o->in) < 0)
                return -1;
            break;
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
    q->env = o->env;
    q->stdin.data = (uint8_t *)cdn_buf_head(&o->in);
    q->stdin.len = cdn_buf_len(&o->in);
    return 0;
}

static void print_json(struct exec_ctx *x, int code) {
    bool lossy_out, lossy_err;
    json_t *o = json_pack("{s:i, s:i, s:b, s:b, s:I}", "exit_code", code, "signal", x->exit.signal,
                          "timed_out", x->exit.timed_out, "output_truncated",
                          x->exit.output_truncated || x->truncated_locally, "command_ms",
                          (json_int_t)x->exit.duration_ms);
    json_object_set_new(o, "stdout", cli_output_json(&x->out[1], &lossy_out));
    json_object_set_new(o, "stderr", cli_output_json(&x->out[2], &lossy_err));
    json_object_set_new(o, "output_not_utf8", json_boolean(lossy_out || lossy_err));
    if (*x->approval)
        json_object_set_new(o, "approval", json_string(x->approval));
    cli_json_print(o);
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
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    struct exec_ctx x = {.json = o.r.json};
    cdn_err *err = NULL;
    int rc = cdn_client_stream(c, "Exec", &o.q.base, &cordon__v1__exec_event__descriptor, on_event,
                               &x, &interrupted, 0, &err);
    cdn_buf_free(&o.in);
    int code;
    if (rc < 0 && !x.exited) {
        code = cli_remote_fail("exec", rc, err);
        err = NULL;
    } else if (x.exit.timed_out) {
        code = CLI_EXIT_TIMEOUT;
    } else if (x.exit.signal) {
        code = 128 + x.exit.signal;
    } else {
        code = x.exit.exit_code;
    }
    cdn_err_free(err);
    if (o.r.json && x.exited)
        print_json(&x, code);
    else if (x.exit.timed_out)
        fprintf(stderr, "cordon exec: command timed out after %u s; its process group was killed\n",
                o.q.timeout_seconds);
    for (int i = 0; i < 3; i++)
        cdn_buf_free(&x.out[i]);
    return code;
}
