/* SPDX-License-Identifier: Apache-2.0 */
/* cordon run: parses options, runs one task, streams its output live (or returns it in --json),
 * and exits with the command's exit code. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "cli.h"
#include "approval.h"
#include "clock.h"
#include "policy.h"
#include "remote.h"
#include "task.h"

#define MAX_ENV 256
#define MAX_ARTIFACTS 64
#define JSON_OUTPUT_LIMIT (16u << 20)

static volatile sig_atomic_t interrupted;

static void on_signal(int signo) {
    (void)signo;
    interrupted = 1;
}

struct approval_ctx;
struct run_ctx {
    struct approval_ctx *approval;
    bool json;
    struct cdn_buf out[3]; /* --json: what each fd produced */
};

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int on_output(void *ud, int fd, const uint8_t *data, size_t len) {
    struct run_ctx *c = ud;
    if (c->json)
        return cdn_buf_append(&c->out[fd], data, len);
    write_all(fd, data, len); /* a closed terminal must not stop the task's teardown */
    return 0;
}

static void on_notice(void *ud, const char *line) {
    (void)ud;
    fprintf(stderr, "cordon: %s\n", line);
}

static void usage(FILE *f) {
    fputs("usage: cordon run [OPTIONS] -- CMD [ARGS...]\n"
          "\n"
          "Boots a fresh microVM, runs CMD in it, streams its output, destroys the VM, and exits\n"
          "with CMD's exit code.\n"
          "\n"
          "options:\n"
          "  --image NAME       guest image: minimal (default; busybox, boots fastest) or devbox\n"
          "                     (Debian with git, make, gcc, python3; on a per-task overlay)\n"
          "  --memory MIB       guest memory (default 512; devbox 1024)\n"
          "  --cpus N           guest vCPUs (default 1)\n"
          "  --accel A          auto (default: KVM once a probe boot proved it works on this\n"
          "                     host, cached per host boot), kvm (fail if unusable) or tcg\n"
          "  --timeout S        kill CMD's whole process group after S seconds (exit 124)\n"
          "  --boot-timeout S   give up if the guest's agent has not answered after S seconds\n"
          "                     (default 60)\n"
          "  --env K=V          set an environment variable for CMD (repeatable)\n"
          "  --workdir DIR      run CMD in DIR inside the guest\n"
          "  --kernel-arg ARG   append ARG to the guest kernel's command line (repeatable)\n"
          "\n"
          "  --repo URL|PATH    work on a repository: mirrored under the state folder, checked\n"
          "                     out at --ref on branch cordon/<task>, uploaded to /workspace\n"
          "                     (CMD's default folder); afterwards /workspace (never its .git)\n"
          "                     comes back, is diffed against the base on the host, committed on\n"
          "                     the task branch and written to the evidence as diff.patch\n"
          "  --ref REF          branch, tag or commit SHA (default: the repository's HEAD)\n"
          "  --max-result-mib N  what /workspace may bring back: file data (default 1024),\n"
          "  --max-result-files N  entries (default 50000), --max-result-depth N (default 64)\n"
          "  --policy FILE      decide CMD by this policy before any VM boots (deny: exit 126;\n"
          "                     approve: ask; see docs/policy.md); its limits bound the options\n"
          "  --approve-all      approve what the policy sends to approval (recorded as you)\n"
          "  --approval-wait S  without a terminal, wait up to S seconds for `cordon approve ID`\n"
          "                     from elsewhere (default: fail closed at once)\n"
          "  --pre-approved F   a file of commands a person approved in advance, one per line\n"
          "                     as CMD's words joined by spaces (# comments)\n"
          "  --artifact GLOB    copy matching guest files into the evidence (repeatable; relative\n"
          "                     to CMD's folder); --max-artifact-mib N caps each (default 64)\n"
          "  --json             print one JSON object (exit code, output, timings) instead of\n"
          "                     streaming the output\n"
          "  --images DIR       where `make images` put the images ($CORDON_IMAGES, else\n"
          "                     /usr/share/cordon/images or ./build/images)\n"
          "  --state DIR        task folders ($CORDON_STATE, else /var/lib/cordon)\n"
          "  --uri URI          libvirt connection (default qemu:///system)\n"
          "\n"
          "exit codes: CMD's own; 124 CMD timed out; 125 cordon could not run it (the reason is\n"
          "printed); 126 the policy refused it or nobody approved it; 130 interrupted.\n",
          f);
}

static int parse_uint(const char *s, const char *what, unsigned max, unsigned *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v == 0 || v > max) {
        fprintf(stderr, "cordon run: %s must be a number from 1 to %u, not '%s'\n", what, max, s);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

struct run_opts {
    struct cdn_task_spec spec;
    const char *env[MAX_ENV];
    const char *artifacts[MAX_ARTIFACTS];
    const char *policy_path;
    bool approve_all;
    unsigned approval_wait_s;
    const char *pre_approved;
    struct cdn_buf kernel_args;
    bool json;
};

static int parse(int argc, char **argv, struct run_opts *o) {
    static const struct option longopts[] = {{"image", required_argument, NULL, 'i'},
                                             {"memory", required_argument, NULL, 'm'},
                                             {"cpus", required_argument, NULL, 'c'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"boot-timeout", required_argument, NULL, 'b'},
                                             {"env", required_argument, NULL, 'e'},
                                             {"workdir", required_argument, NULL, 'w'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"images", required_argument, NULL, 'I'},
                                             {"state", required_argument, NULL, 's'},
                                             {"uri", required_argument, NULL, 'u'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"kernel-arg", required_argument, NULL, 'k'},
                                             {"accel", required_argument, NULL, 'a'},
                                             {"repo", required_argument, NULL, 'R'},
                                             {"ref", required_argument, NULL, 'r'},
                                             {"artifact", required_argument, NULL, 'A'},
                                             {"max-result-mib", required_argument, NULL, 'B'},
                                             {"max-result-files", required_argument, NULL, 'F'},
                                             {"max-result-depth", required_argument, NULL, 'D'},
                                             {"max-artifact-mib", required_argument, NULL, 'X'},
                                             {"policy", required_argument, NULL, 'P'},
                                             {"approve-all", no_argument, NULL, 'Y'},
                                             {"approval-wait", required_argument, NULL, 'W'},
                                             {"pre-approved", required_argument, NULL, 'L'},
                                             {NULL, 0, NULL, 0}};
    struct cdn_task_spec *s = &o->spec;
    unsigned v;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1;) {
        switch (c) {
        case 'i': s->image = optarg; break;
        case 'R': s->repo = optarg; break;
        case 'P': o->policy_path = optarg; break;
        case 'Y': o->approve_all = true; break;
        case 'L': o->pre_approved = optarg; break;
        case 'W':
            if (parse_uint(optarg, "--approval-wait", 7 * 86400, &o->approval_wait_s) < 0)
                return -1;
            break;
        case 'r': s->ref = optarg; break;
        case 'A':
            if (s->n_artifacts == MAX_ARTIFACTS) {
                fprintf(stderr, "cordon run: at most %d --artifact patterns\n", MAX_ARTIFACTS);
                return -1;
            }
            o->artifacts[s->n_artifacts++] = optarg;
            break;
        case 'B':
            if (parse_uint(optarg, "--max-result-mib", 1u << 20, &v) < 0)
                return -1;
            s->result_limits.max_total_bytes = (uint64_t)v << 20;
            break;
        case 'F':
            if (parse_uint(optarg, "--max-result-files", UINT_MAX, &v) < 0)
                return -1;
            s->result_limits.max_entries = v;
            break;
        case 'D':
            if (parse_uint(optarg, "--max-result-depth", 4096, &v) < 0)
                return -1;
            s->result_limits.max_depth = v;
            break;
        case 'X':
            if (parse_uint(optarg, "--max-artifact-mib", 1u << 20, &v) < 0)
                return -1;
            s->artifact_max_bytes = (uint64_t)v << 20;
            break;
        case 'a':
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "kvm") != 0 &&
                strcmp(optarg, "tcg") != 0) {
                fprintf(stderr, "cordon run: --accel takes auto, kvm or tcg, not '%s'\n", optarg);
                return -1;
            }
            s->accel = optarg;
            break;
        case 'm':
            if (parse_uint(optarg, "--memory", 1u << 20, &s->memory_mib) < 0)
                return -1;
            break;
        case 'c':
            if (parse_uint(optarg, "--cpus", 256, &s->vcpus) < 0)
                return -1;
            break;
        case 't':
            if (parse_uint(optarg, "--timeout", UINT_MAX / 1000, &v) < 0)
                return -1;
            s->timeout_ms = v * 1000u;
            break;
        case 'b':
            if (parse_uint(optarg, "--boot-timeout", 3600, &v) < 0)
                return -1;
            s->boot_timeout_ms = (int)v * 1000;
            break;
        case 'e':
            if (!strchr(optarg, '=') || optarg[0] == '=' || s->envc == MAX_ENV) {
                fprintf(stderr, "cordon run: --env takes KEY=VALUE (at most %d), not '%s'\n",
                        MAX_ENV, optarg);
                return -1;
            }
            o->env[s->envc++] = optarg;
            break;
        case 'w': s->workdir = optarg; break;
        case 'k':
            if (strpbrk(optarg, " \t\n") || !*optarg) {
                fprintf(stderr, "cordon run: --kernel-arg takes one word, not '%s'\n", optarg);
                return -1;
            }
            if ((cdn_buf_len(&o->kernel_args) && cdn_buf_append(&o->kernel_args, " ", 1) < 0) ||
                cdn_buf_append(&o->kernel_args, optarg, strlen(optarg)) < 0)
                return -1;
            break;
        case 'j': o->json = true; break;
        case 'I': s->images_dir = optarg; break;
        case 's': s->state_dir = optarg; break;
        case 'u': s->uri = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    s->artifacts = o->artifacts;
    if (optind >= argc) {
        fprintf(stderr, "cordon run: no command given (cordon run [OPTIONS] -- CMD [ARGS...])\n");
        return -1;
    }
    s->argv = (const char *const *)argv + optind;
    s->argc = (size_t)(argc - optind);
    s->env = o->env;
    if (cdn_buf_len(&o->kernel_args)) {
        if (cdn_buf_append(&o->kernel_args, "", 1) < 0)
            return -1;
        s->kernel_args = (const char *)cdn_buf_head(&o->kernel_args);
    }
    return 0;
}

static void print_json(struct run_ctx *ctx, const struct cdn_task_result *res, int code,
                       const char *error) {
    json_t *o = json_object();
    json_object_set_new(o, "exit_code", json_integer(code));
    json_object_set_new(o, "task", json_string(res->id));
    json_object_set_new(o, "vm", json_string(res->vm));
    if (res->console)
        json_object_set_new(o, "console_log", json_string(res->console));
    if (res->evidence)
        json_object_set_new(o, "evidence", json_string(res->evidence));
    if (error) {
        json_object_set_new(o, "error", json_string(error));
    } else {
        const struct cdn_exec_result *x = &res->exec;
        json_object_set_new(o, "signal", json_integer(x->signal));
        json_object_set_new(o, "timed_out", json_boolean(x->timed_out));
        json_object_set_new(o, "output_truncated", json_boolean(x->output_truncated));
        bool lossy_out, lossy_err;
        json_object_set_new(o, "stdout", cli_output_json(&ctx->out[1], &lossy_out));
        json_object_set_new(o, "stderr", cli_output_json(&ctx->out[2], &lossy_err));
        json_object_set_new(o, "output_not_utf8", json_boolean(lossy_out || lossy_err));
        json_object_set_new(o, "user_ms", json_integer((json_int_t)x->user_ms));
        json_object_set_new(o, "sys_ms", json_integer((json_int_t)x->sys_ms));
        json_object_set_new(o, "max_rss_kib", json_integer((json_int_t)x->max_rss_kib));
        json_object_set_new(o, "command_ms", json_integer((json_int_t)x->duration_ms));
        if (res->has_repo) {
            json_object_set_new(o, "base", json_string(res->base));
            json_object_set_new(o, "result", json_string(res->result));
            json_object_set_new(o, "branch", json_string(res->branch));
            json_object_set_new(o, "changed", json_boolean(res->changed));
            json_object_set_new(o, "diff",
                                json_pack("{s:I, s:I, s:I}", "files_changed",
                                          (json_int_t)res->diff.files, "insertions",
                                          (json_int_t)res->diff.insertions, "deletions",
                                          (json_int_t)res->diff.deletions));
        }
        json_object_set_new(o, "accel", json_string(res->accel ? res->accel : ""));
        json_object_set_new(o, "transport", json_string(res->transport ? res->transport : ""));
        json_object_set_new(o, "create_ms", json_integer((json_int_t)res->create_ms));
        json_object_set_new(o, "boot_ms", json_integer((json_int_t)res->boot_ms));
        json_object_set_new(o, "total_ms", json_integer((json_int_t)res->total_ms));
    }
    json_dumpf(o, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(o);
}

struct approval_ctx {
    const char *state;
    bool approve_all;
    unsigned wait_s;
    const char *pre_approved;
    const char *cmdline; /* CMD's words joined by spaces */
};

/* The line of the pre-approval file that is exactly this command (0: none). */
static unsigned pre_approved_line(const char *file, const char *cmdline) {
    FILE *f = file ? fopen(file, "re") : NULL;
    char line[8192];
    unsigned n = 0, found = 0;
    while (f && !found && fgets(line, sizeof(line), f)) {
        n++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '#' && strcmp(line, cmdline) == 0)
            found = n;
    }
    if (f)
        fclose(f);
    return found;
}

static void show_request(const char *id, const struct cdn_policy_decision *d) {
    fprintf(stderr, "cordon: approval needed (request %s):\n", id);
    for (size_t i = 0; i < d->n; i++) {
        fprintf(stderr, "  %-8s", cdn_policy_action_name(d->parts[i].action));
        for (size_t j = 0; j < d->parts[i].argc; j++)
            fprintf(stderr, " %s", d->parts[i].argv[j]);
        fprintf(stderr, "\n           by %s%s%s\n", d->parts[i].rule,
                d->parts[i].reason ? ": " : "", d->parts[i].reason ? d->parts[i].reason : "");
    }
}

/* The outcome of request id: --approve-all, the terminal (y/N), or `cordon approve|deny ID`
 * from elsewhere, whichever comes first; nobody within the wait, or no way to ask: expired. */
static enum cdn_approval_status ask(void *ud, const char *id, const struct cdn_policy_decision *d,
                                    char *by, size_t by_size) {
    struct approval_ctx *a = ud;
    char me[256];
    cdn_approval_whoami(me, sizeof(me));
    show_request(id, d);
    enum cdn_approval_status st = CDN_APPROVAL_EXPIRED;
    if (a->approve_all) {
        snprintf(by, by_size, "%s with --approve-all", me);
        cdn_approval_decide(a->state, id, CDN_APPROVAL_APPROVED, by, NULL);
        return CDN_APPROVAL_APPROVED;
    }
    unsigned line = pre_approved_line(a->pre_approved, a->cmdline);
    if (line) {
        snprintf(by, by_size, "the pre-approval list %s:%u (run by %s)", a->pre_approved, line, me);
        cdn_approval_decide(a->state, id, CDN_APPROVAL_APPROVED, by, NULL);
        return CDN_APPROVAL_APPROVED;
    }
    bool tty = isatty(0) && isatty(2);
    if (!tty && !a->wait_s) {
        snprintf(by, by_size, "nobody (no terminal, no --approve-all, no --approval-wait)");
        cdn_approval_decide(a->state, id, CDN_APPROVAL_EXPIRED, by, NULL);
        return CDN_APPROVAL_EXPIRED;
    }
    fprintf(stderr, "cordon: decide with `cordon approve %s` or `cordon deny %s`%s\n", id, id,
            tty ? ", or here: approve? [y/N] " : "");
    uint64_t deadline = a->wait_s ? cdn_now_ms() + a->wait_s * 1000ull : UINT64_MAX;
    while (!interrupted && cdn_now_ms() < deadline) {
        char *who = NULL;
        if (cdn_approval_get(a->state, id, &st, &who, NULL) == 0 && st != CDN_APPROVAL_PENDING) {
            snprintf(by, by_size, "%s", who ? who : "?");
            free(who);
            return st;
        }
        free(who);
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (tty && poll(&p, 1, 200) == 1) {
            char answer[64] = "";
            bool yes =
                fgets(answer, sizeof(answer), stdin) && (answer[0] == 'y' || answer[0] == 'Y');
            st = yes ? CDN_APPROVAL_APPROVED : CDN_APPROVAL_DENIED;
            snprintf(by, by_size, "%s at the terminal", me);
            if (cdn_approval_decide(a->state, id, st, by, NULL) == 0)
                return st;
            continue; /* decided elsewhere meanwhile: that decision stands */
        }
        if (!tty)
            usleep(200000);
    }
    snprintf(by, by_size, "nobody within %u s", a->wait_s);
    if (cdn_approval_decide(a->state, id, CDN_APPROVAL_EXPIRED, by, NULL) < 0 &&
        cdn_approval_get(a->state, id, &st, NULL, NULL) == 0 && st != CDN_APPROVAL_PENDING)
        return st; /* decided in the last instant */
    return CDN_APPROVAL_EXPIRED;
}

static enum cdn_approval_status ask_approval(void *ud, const char *id,
                                             const struct cdn_policy_decision *d, char *by,
                                             size_t by_size) {
    struct run_ctx *c = ud;
    return ask(c->approval, id, d, by, by_size);
}

/* After the command's output, on stderr (stdout stays the command's). */
static void print_summary(const struct cdn_task_result *res) {
    if (res->has_repo && res->changed)
        fprintf(stderr, "cordon: %zu file%s changed, +%zu -%zu, committed on %s (%.12s)\n",
                res->diff.files, res->diff.files == 1 ? "" : "s", res->diff.insertions,
                res->diff.deletions, res->branch, res->result);
    else if (res->has_repo)
        fprintf(stderr, "cordon: no change to the repository (base %.12s)\n", res->base);
    fprintf(stderr, "cordon: evidence in %s (cordon show %s; cordon diff %s)\n", res->evidence,
            res->id, res->id);
}

int cli_run(int argc, char **argv) {
    struct run_opts o = {0};
    if (parse(argc, argv, &o) < 0)
        return CLI_EXIT_FAILURE;
    struct cdn_task_spec *s = &o.spec;
    if (!s->images_dir)
        s->images_dir = cli_default_images();
    if (!s->state_dir)
        s->state_dir = cli_default_state();
    _cleanup_(cdn_policy_freep) struct cdn_policy *policy = NULL;
    if (o.policy_path) {
        cdn_err *perr = NULL;
        if (cdn_policy_load(o.policy_path, &policy, &perr) < 0) {
            fprintf(stderr, "cordon run: %s\n", cdn_err_msg(perr));
            cdn_err_free(perr);
            cdn_buf_free(&o.kernel_args);
            return CLI_EXIT_FAILURE;
        }
        s->policy = policy;
    }
    struct cdn_buf cmdline = {0};
    for (size_t i = 0; i < s->argc; i++)
        if ((i && cdn_buf_append(&cmdline, " ", 1) < 0) ||
            cdn_buf_append(&cmdline, s->argv[i], strlen(s->argv[i])) < 0)
            return CLI_EXIT_FAILURE;
    cdn_buf_append(&cmdline, "\0", 1);
    struct approval_ctx actx = {.state = s->state_dir,
                                .approve_all = o.approve_all,
                                .wait_s = o.approval_wait_s,
                                .pre_approved = o.pre_approved,
                                .cmdline = (const char *)cdn_buf_head(&cmdline)};
    struct run_ctx ctx = {.json = o.json, .approval = &actx};
    s->on_output = on_output;
    s->on_notice = on_notice;
    s->on_approval = ask_approval;
    s->ud = &ctx;
    s->cancel = &interrupted;
    if (o.json)
        s->output_limit = JSON_OUTPUT_LIMIT;
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll must wake */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    struct cdn_task_result res;
    _cleanup_err_ cdn_err *err = NULL;
    int r = cdn_task_run(s, &res, &err);
    int code;
    if (r == -EINTR || interrupted)
        code = CLI_EXIT_INTERRUPTED;
    else if (r == -EPERM)
        code = CLI_EXIT_REFUSED;
    else if (r < 0)
        code = CLI_EXIT_FAILURE;
    else if (res.exec.timed_out)
        code = CLI_EXIT_TIMEOUT;
    else
        code = res.exec.exit_code;
    if (o.json)
        print_json(&ctx, &res, code, r < 0 ? cdn_err_msg(err) : NULL);
    else if (code == CLI_EXIT_INTERRUPTED)
        fprintf(stderr, "cordon run: interrupted; VM %s destroyed\n", res.vm);
    else if (r < 0)
        fprintf(stderr, "cordon run: %s\n", cdn_err_msg(err));
    else if (res.exec.timed_out)
        fprintf(stderr, "cordon run: command timed out after %u s; its process group was killed\n",
                s->timeout_ms / 1000);
    else if (s->repo || s->n_artifacts)
        print_summary(&res);
    if (!o.json && r < 0 && res.evidence)
        fprintf(stderr, "cordon run: evidence so far: %s\n", res.evidence);
    for (int i = 0; i < 3; i++)
        cdn_buf_free(&ctx.out[i]);
    cdn_buf_free(&o.kernel_args);
    cdn_buf_free(&cmdline);
    cdn_task_result_free(&res);
    return code;
}
