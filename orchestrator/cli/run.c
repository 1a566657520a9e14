/* SPDX-License-Identifier: Apache-2.0 */
/* cordon run: one command in a fresh sandbox, through cordond's API: the daemon at --addr, or one
 * started in this process for the run (a private socket and store; the same state folder). It
 * creates the sandbox (booted for the command only once the policy lets it through), streams the
 * command, asks for an approval when the policy wants one, stops the sandbox (its result taken),
 * reports, and exits with the command's exit code. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "daemon.h"
#include "exec_stream.h"
#include "own_daemon.h"
#include "policy.h"
#include "fsutil.h"
#include "task_gc.h"

#define MAX_ARTIFACTS 64
#define MAX_KERNEL_ARGS 32
#define JSON_OUTPUT_LIMIT (16u << 20)
#define APPROVAL_WAIT_MAX (7 * 86400)

static void usage(FILE *f) {
    fputs("usage: cordon run [OPTIONS] -- CMD [ARGS...]\n"
          "\n"
          "Runs CMD in a fresh microVM, streams its output, destroys the VM, and exits with\n"
          "CMD's exit code. With no daemon's address, it starts one of its own for the run.\n"
          "\n"
          "options:\n"
          "  --image NAME       guest image: minimal (default; busybox, boots fastest) or devbox\n"
          "                     (Debian with git, make, gcc, python3; on a per-task overlay)\n"
          "  --memory MIB       guest memory (default 512; devbox 1024)\n"
          "  --cpus N           guest vCPUs (default 1)\n"
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
          "  --policy FILE      decide CMD by this policy before its VM boots (deny: exit 126;\n"
          "                     approve: ask; see docs/policy.md); its limits bound the options\n"
          "  --approve-all      approve what the policy sends to approval (recorded as you)\n"
          "  --approval-wait S  without a terminal, wait up to S seconds for `cordon approve ID`\n"
          "                     from elsewhere (default: fail closed at once)\n"
          "  --pre-approved F   a file of commands a person approved in advance, one per line\n"
          "                     as CMD's words joined by spaces (# comments)\n"
          "  --artifact GLOB    copy matching guest files into the evidence (repeatable; relative\n"
          "                     to /workspace); --max-artifact-mib N caps each (default 64)\n"
          "  --json             print one JSON object (exit code, output, timings) instead of\n"
          "                     streaming the output\n"
          "\n"
          "the run's own daemon (without --addr):\n"
          "  --accel A          auto (default: KVM once a probe boot proved it works on this\n"
          "                     host, cached per host boot), kvm (fail if unusable) or tcg\n"
          "  --images DIR       where `make images` put the images ($CORDON_IMAGES, else\n"
          "                     /usr/share/cordon/images or ./build/images)\n"
          "  --state DIR        task folders ($CORDON_STATE, else /var/lib/cordon)\n"
          "  --uri URI          libvirt connection (default qemu:///system)\n"
          "\n"
          "a running daemon instead:\n" CLI_REMOTE_USAGE "\n"
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
    struct cli_remote r;
    Cordon__V1__CreateSandboxRequest create;
    Cordon__V1__Limits limits;
    Cordon__V1__ExecRequest exec;
    char *env[CLI_EXEC_MAX_ENV];
    char *artifacts[MAX_ARTIFACTS];
    char *kernel_args[MAX_KERNEL_ARGS];
    const char *policy_path, *pre_approved;
    bool approve_all;
    unsigned approval_wait_s;
    /* the run's own daemon */
    const char *accel, *images, *state, *uri;
};

/* The options that shape the run's own daemon, refused with a daemon's address. */
static bool own_daemon_option(int c) { return c == 'a' || c == 'I' || c == 's' || c == 'u'; }

static int parse(int argc, char **argv, struct run_opts *o) {
    static const struct option longopts[] = {{"image", required_argument, NULL, 'i'},
                                             {"memory", required_argument, NULL, 'm'},
                                             {"cpus", required_argument, NULL, 'c'},
                                             {"boot-timeout", required_argument, NULL, 'b'},
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
                                             CLI_EXEC_LONGOPTS,
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    Cordon__V1__CreateSandboxRequest *cr = &o->create;
    Cordon__V1__Limits *l = &o->limits;
    Cordon__V1__ExecRequest *x = &o->exec;
    unsigned v;
    bool own_daemon_opt = false;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1;) {
        own_daemon_opt = own_daemon_opt || own_daemon_option(c);
        int mine = cli_exec_option("run", c, optarg, x, o->env);
        if (mine < 0)
            return -1;
        if (mine)
            continue;
        switch (c) {
        case 'i': cr->image = optarg; break;
        case 'R': cr->repo = optarg; break;
        case 'r': cr->ref = optarg; break;
        case 'P': o->policy_path = optarg; break;
        case 'Y': o->approve_all = true; break;
        case 'L': o->pre_approved = optarg; break;
        case 'W':
            if (parse_uint(optarg, "--approval-wait", APPROVAL_WAIT_MAX, &o->approval_wait_s) < 0)
                return -1;
            break;
        case 'A':
            if (cr->n_artifacts == MAX_ARTIFACTS) {
                fprintf(stderr, "cordon run: at most %d --artifact patterns\n", MAX_ARTIFACTS);
                return -1;
            }
            o->artifacts[cr->n_artifacts++] = optarg;
            break;
        case 'B':
            if (parse_uint(optarg, "--max-result-mib", 1u << 20, &v) < 0)
                return -1;
            l->max_bytes_returned = (uint64_t)v << 20;
            break;
        case 'F':
            if (parse_uint(optarg, "--max-result-files", UINT_MAX, &v) < 0)
                return -1;
            l->max_files_returned = v;
            break;
        case 'D':
            if (parse_uint(optarg, "--max-result-depth", 4096, &l->max_depth_returned) < 0)
                return -1;
            break;
        case 'X':
            if (parse_uint(optarg, "--max-artifact-mib", 1u << 20, &v) < 0)
                return -1;
            cr->max_artifact_bytes = (uint64_t)v << 20;
            break;
        case 'a':
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "kvm") != 0 &&
                strcmp(optarg, "tcg") != 0) {
                fprintf(stderr, "cordon run: --accel takes auto, kvm or tcg, not '%s'\n", optarg);
                return -1;
            }
            o->accel = optarg;
            break;
        case 'm':
            if (parse_uint(optarg, "--memory", 1u << 20, &l->memory_mib) < 0)
                return -1;
            break;
        case 'c':
            if (parse_uint(optarg, "--cpus", 256, &l->cpus) < 0)
                return -1;
            break;
        case 'b':
            if (parse_uint(optarg, "--boot-timeout", 3600, &cr->boot_timeout_seconds) < 0)
                return -1;
            break;
        case 'k':
            if (strpbrk(optarg, " \t\n") || !*optarg || cr->n_kernel_args == MAX_KERNEL_ARGS) {
                fprintf(stderr, "cordon run: --kernel-arg takes one word (at most %d), not '%s'\n",
                        MAX_KERNEL_ARGS, optarg);
                return -1;
            }
            o->kernel_args[cr->n_kernel_args++] = optarg;
            break;
        case 'I': o->images = optarg; break;
        case 's': o->state = optarg; break;
        case 'u': o->uri = optarg; break;
        case 'h': usage(stdout); exit(0);
        default:
            if (cli_remote_option(&o->r, c, optarg))
                break;
            usage(stderr);
            return -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "cordon run: no command given (cordon run [OPTIONS] -- CMD [ARGS...])\n");
        return -1;
    }
    if (own_daemon_opt && cli_remote_given(&o->r)) {
        fprintf(stderr, "cordon run: --accel, --images, --state and --uri are the daemon's own "
                        "settings; not with a daemon's address (--addr or $CORDON_ADDR)\n");
        return -1;
    }
    x->argv = argv + optind;
    x->n_argv = (size_t)(argc - optind);
    cr->artifacts = o->artifacts;
    cr->kernel_args = o->kernel_args;
    return 0;
}

/* ---- approvals: --approve-all, the pre-approval list, the terminal, or someone else ---- */

struct asker {
    const struct run_opts *o;
    struct cdn_client *c;
    const char *cmdline; /* CMD's words joined by spaces */
    bool tty;
};

/* The line of the pre-approval file that is exactly this command (0: none). */
static unsigned pre_approved_line(const char *file, const char *cmdline) {
    _cleanup_fclose_ FILE *f = file ? fopen(file, "re") : NULL;
    char line[8192];
    unsigned n = 0;
    while (f && fgets(line, sizeof(line), f)) {
        n++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '#' && strcmp(line, cmdline) == 0)
            return n;
    }
    return 0;
}

/* 0 decided, -EALREADY decided by someone else meanwhile, < 0 otherwise (printed). */
static int decide(struct asker *a, const char *id, bool approve, const char *reason) {
    Cordon__V1__DecideRequest q = CORDON__V1__DECIDE_REQUEST__INIT;
    q.approval_id = (char *)id;
    q.approve = approve;
    q.reason = (char *)reason;
    ProtobufCMessage *resp = NULL;
    cdn_err *e = NULL;
    int r = cdn_client_call(a->c, "Decide", &q.base, &cordon__v1__approval__descriptor, &resp,
                            30000, &e);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (r == -EBADFD)
        r = -EALREADY; /* FAILED_PRECONDITION: decided already */
    else if (r < 0)
        fprintf(stderr, "cordon run: deciding %s: %s\n", id, cdn_err_msg(e));
    cdn_err_free(e);
    return r;
}

static bool decided_elsewhere(struct asker *a, const Cordon__V1__Approval *ap) {
    Cordon__V1__ListApprovalsRequest q = CORDON__V1__LIST_APPROVALS_REQUEST__INIT;
    q.sandbox_id = ap->sandbox_id;
    q.include_decided = true;
    ProtobufCMessage *resp = NULL;
    if (cdn_client_call(a->c, "ListApprovals", &q.base,
                        &cordon__v1__list_approvals_response__descriptor, &resp, 10000, NULL) < 0)
        return false;
    const Cordon__V1__ListApprovalsResponse *l = (const void *)resp;
    bool done = false;
    for (size_t i = 0; i < l->n_approvals; i++)
        if (strcmp(l->approvals[i]->id, ap->id) == 0)
            done = l->approvals[i]->status != CORDON__V1__APPROVAL_STATUS__PENDING;
    protobuf_c_message_free_unpacked(resp, NULL);
    return done;
}

static void ask(void *ud, const Cordon__V1__Approval *ap) {
    struct asker *a = ud;
    if (a->o->approve_all) {
        decide(a, ap->id, true, "with --approve-all");
        return;
    }
    unsigned line = pre_approved_line(a->o->pre_approved, a->cmdline);
    if (line) {
        char why[4200];
        snprintf(why, sizeof(why), "the pre-approval list %.4000s:%u", a->o->pre_approved, line);
        decide(a, ap->id, true, why);
        return;
    }
    if (!a->tty) {
        if (a->o->approval_wait_s)
            fprintf(stderr,
                    "cordon: waiting up to %u s; decide with `cordon approve %s` or `cordon deny "
                    "%s`\n",
                    a->o->approval_wait_s, ap->id, ap->id);
        else
            fprintf(stderr, "cordon: nobody to ask (no terminal, no --approve-all, no "
                            "--approval-wait): the request expires\n");
        return; /* the daemon waits (or expires it at once) */
    }
    fprintf(stderr,
            "cordon: decide with `cordon approve %s` or `cordon deny %s`, or here: approve? "
            "[y/N] ",
            ap->id, ap->id);
    for (unsigned tick = 0; !cli_interrupted; tick++) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (poll(&p, 1, 200) == 1) {
            char answer[64] = "";
            bool yes =
                fgets(answer, sizeof(answer), stdin) && (answer[0] == 'y' || answer[0] == 'Y');
            decide(a, ap->id, yes, "at the terminal");
            return; /* decided here, or elsewhere meanwhile: that decision stands */
        }
        if (tick % 5 == 4 && decided_elsewhere(a, ap))
            return;
    }
}

/* ---- the run ---- */

static int read_policy(const char *path, char **text) {
    _cleanup_(cdn_policy_freep) struct cdn_policy *p = NULL;
    cdn_err *e = NULL;
    if (cdn_policy_load(path, &p, &e) < 0) { /* its errors name the file */
        fprintf(stderr, "cordon run: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        return -1;
    }
    size_t n;
    if (cdn_read_file(path, CDN_POLICY_MAX_BYTES, text, &n, &e) < 0) { /* changed meanwhile */
        fprintf(stderr, "cordon run: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        return -1;
    }
    return 0;
}

/* What the run came to, from the daemon once the sandbox stopped. */
struct outcome {
    Cordon__V1__Sandbox *sandbox;
    Cordon__V1__Evidence *evidence;
    json_t *manifest;
};

static void outcome_take(struct cdn_client *c, const char *id, struct outcome *out) {
    Cordon__V1__GetSandboxRequest g = CORDON__V1__GET_SANDBOX_REQUEST__INIT;
    g.id = (char *)id;
    cdn_client_call(c, "GetSandbox", &g.base, &cordon__v1__sandbox__descriptor,
                    (ProtobufCMessage **)&out->sandbox, 30000, NULL);
    Cordon__V1__GetEvidenceRequest e = CORDON__V1__GET_EVIDENCE_REQUEST__INIT;
    e.sandbox_id = (char *)id;
    if (cdn_client_call(c, "GetEvidence", &e.base, &cordon__v1__evidence__descriptor,
                        (ProtobufCMessage **)&out->evidence, 30000, NULL) == 0)
        out->manifest = json_loads(out->evidence->manifest_json, 0, NULL);
}

static void outcome_free(struct outcome *o) {
    if (o->sandbox)
        protobuf_c_message_free_unpacked(&o->sandbox->base, NULL);
    if (o->evidence)
        protobuf_c_message_free_unpacked(&o->evidence->base, NULL);
    json_decref(o->manifest);
}

static const char *mstr(const struct outcome *o, const char *key) {
    return json_string_value(json_object_get(o->manifest, key));
}

static json_int_t mint(const struct outcome *o, const char *key) {
    return json_integer_value(json_object_get(o->manifest, key));
}

static void print_json(struct cli_exec *x, const char *id, const struct outcome *oc, int code,
                       const char *error) {
    json_t *o = error ? json_object() : cli_exec_json(x, code);
    json_object_set_new(o, "exit_code", json_integer(code));
    json_object_set_new(o, "task", json_string(id));
    const char *vm = mstr(oc, "vm");
    if (vm)
        json_object_set_new(o, "vm", json_string(vm));
    const char *dir = oc->evidence ? oc->evidence->evidence_dir : NULL;
    if (dir) {
        json_object_set_new(o, "evidence", json_string(dir));
        char console[4400];
        snprintf(console, sizeof(console), "%s/console.log", dir);
        if (access(console, F_OK) == 0)
            json_object_set_new(o, "console_log", json_string(console));
    }
    if (error) {
        json_object_set_new(o, "error", json_string(error));
    } else {
        const char *base = mstr(oc, "base"), *result = mstr(oc, "result");
        if (base && result) {
            json_t *d = json_object_get(oc->manifest, "diff");
            json_object_set_new(o, "base", json_string(base));
            json_object_set_new(o, "result", json_string(result));
            json_object_set_new(o, "branch", json_string(mstr(oc, "branch") ?: ""));
            json_object_set_new(o, "changed", json_boolean(strcmp(base, result) != 0));
            json_object_set_new(
                o, "diff",
                json_pack("{s:I, s:I, s:I}", "files_changed",
                          json_integer_value(json_object_get(d, "files_changed")), "insertions",
                          json_integer_value(json_object_get(d, "insertions")), "deletions",
                          json_integer_value(json_object_get(d, "deletions"))));
        }
        json_object_set_new(o, "accel", json_string(mstr(oc, "accel") ?: ""));
        json_object_set_new(o, "transport", json_string(mstr(oc, "transport") ?: ""));
        json_object_set_new(o, "create_ms", json_integer(mint(oc, "create_ms")));
        json_object_set_new(o, "boot_ms", json_integer(mint(oc, "boot_ms")));
        json_object_set_new(o, "total_ms", json_integer(mint(oc, "total_ms")));
    }
    cli_json_print(o);
}

/* After the command's output, on stderr (stdout stays the command's). */
static void print_summary(const char *id, const struct outcome *oc, bool repo) {
    const char *base = mstr(oc, "base"), *result = mstr(oc, "result");
    json_t *d = json_object_get(oc->manifest, "diff");
    json_int_t files = json_integer_value(json_object_get(d, "files_changed"));
    if (repo && base && result && strcmp(base, result) != 0)
        fprintf(stderr, "cordon: %lld file%s changed, +%lld -%lld, committed on %s (%.12s)\n",
                (long long)files, files == 1 ? "" : "s",
                (long long)json_integer_value(json_object_get(d, "insertions")),
                (long long)json_integer_value(json_object_get(d, "deletions")),
                mstr(oc, "branch") ?: "?", result);
    else if (repo && base)
        fprintf(stderr, "cordon: no change to the repository (base %.12s)\n", base);
    fprintf(stderr, "cordon: evidence in %s (cordon show %s; cordon diff %s)\n",
            oc->evidence ? oc->evidence->evidence_dir : "?", id, id);
}

static int stop_sandbox(struct cdn_client *c, const char *id) {
    Cordon__V1__CancelRequest q = CORDON__V1__CANCEL_REQUEST__INIT;
    q.id = (char *)id;
    ProtobufCMessage *resp = NULL;
    cdn_err *e = NULL;
    int r = cdn_client_call(c, "Cancel", &q.base, &cordon__v1__sandbox__descriptor, &resp, 0, &e);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (r < 0)
        fprintf(stderr, "cordon run: stopping sandbox %s: %s\n", id, cdn_err_msg(e));
    cdn_err_free(e);
    return r;
}

/* The sandbox created, the command run, the sandbox stopped; the exit code. */
static int run_on(struct cdn_client *c, struct run_opts *o, const char *cmdline) {
    ProtobufCMessage *created = NULL;
    cdn_err *err = NULL;
    int r = cdn_client_call(c, "CreateSandbox", &o->create.base, &cordon__v1__sandbox__descriptor,
                            &created, 60000, &err);
    if (r < 0)
        return cli_remote_fail("run", r, err);
    char id[64];
    snprintf(id, sizeof(id), "%s", ((Cordon__V1__Sandbox *)created)->id);
    protobuf_c_message_free_unpacked(created, NULL);

    struct asker a = {.o = o, .c = c, .cmdline = cmdline, .tty = isatty(0) && isatty(2)};
    Cordon__V1__ExecRequest *q = &o->exec;
    if (o->approval_wait_s)
        q->approval_wait_seconds = o->approval_wait_s;
    else if (!a.tty && !o->approve_all && !pre_approved_line(o->pre_approved, cmdline))
        q->no_approval_wait = true; /* nobody could answer: fail closed at once */
    q->sandbox_id = id;
    struct cli_exec x = {.cmd = "run", .json = o->r.json, .on_pending = ask, .ud = &a};
    r = cli_sandbox_wait(c, id, 0, NULL, &err); /* READY: the VM boots for the command */
    if (r >= 0)
        r = cli_exec_stream(c, q, &x, &cli_interrupted, &err);
    if (cli_interrupted)
        r = -EINTR;
    stop_sandbox(c, id); /* its result taken, its VM destroyed */
    struct outcome oc = {0};
    outcome_take(c, id, &oc);
    if (oc.sandbox && oc.sandbox->state == CORDON__V1__SANDBOX_STATE__AWAITING_REVIEW)
        fprintf(stderr,
                "cordon: the result awaits review: cordon review %s, then cordon review "
                "approve|reject %s\n",
                id, id);
    /* A sandbox that failed (its VM, its disk limit, a result over its limits) fails the run. */
    const char *failed = oc.sandbox && oc.sandbox->state == CORDON__V1__SANDBOX_STATE__FAILED
                             ? oc.sandbox->error
                             : NULL;
    int code;
    const char *error = NULL;
    if (r == -EINTR) {
        code = CLI_EXIT_INTERRUPTED;
        fprintf(stderr, "cordon run: interrupted; VM %s destroyed\n", mstr(&oc, "vm") ?: id);
    } else if (failed) { /* why it failed, rather than what that did to the command */
        error = failed;
        code = CLI_EXIT_FAILURE;
    } else if (r < 0) {
        error = cdn_err_msg(err);
        code = r == -EPERM ? CLI_EXIT_REFUSED : CLI_EXIT_FAILURE;
    } else {
        code = cli_exec_code(&x);
    }
    if (o->r.json && code != CLI_EXIT_INTERRUPTED)
        print_json(&x, id, &oc, code, error);
    else if (error)
        fprintf(stderr, "cordon run: %s\n", error);
    else if (code == CLI_EXIT_TIMEOUT && x.exit.timed_out)
        fprintf(stderr, "cordon run: command timed out after %u s; its process group was killed\n",
                q->timeout_seconds);
    else if (code != CLI_EXIT_INTERRUPTED && (*o->create.repo || o->create.n_artifacts))
        print_summary(id, &oc, *o->create.repo);
    if (!o->r.json && error && oc.evidence)
        fprintf(stderr, "cordon run: evidence so far: %s\n", oc.evidence->evidence_dir);
    cdn_err_free(err);
    outcome_free(&oc);
    cli_exec_free(&x);
    return code;
}

int cli_run(int argc, char **argv) {
    struct run_opts o = {0};
    cli_remote_init(&o.r);
    cordon__v1__create_sandbox_request__init(&o.create);
    cordon__v1__limits__init(&o.limits);
    cordon__v1__exec_request__init(&o.exec);
    if (parse(argc, argv, &o) < 0)
        return CLI_EXIT_FAILURE;
    _cleanup_free_ char *policy = NULL;
    if (o.policy_path) {
        if (read_policy(o.policy_path, &policy) < 0)
            return CLI_EXIT_FAILURE;
        o.create.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
        o.create.policy_text = policy;
    }
    if (o.r.json)
        o.limits.output_bytes = JSON_OUTPUT_LIMIT;
    o.create.limits = &o.limits;
    o.create.defer_boot = true; /* a refused command costs no VM */
    Cordon__V1__CreateSandboxRequest__LabelsEntry label =
        CORDON__V1__CREATE_SANDBOX_REQUEST__LABELS_ENTRY__INIT;
    label.key = "cordon.run";
    label.value = "1";
    Cordon__V1__CreateSandboxRequest__LabelsEntry *labels[] = {&label};
    o.create.labels = labels;
    o.create.n_labels = 1;
    struct cdn_buf cmdline = {0};
    for (size_t i = 0; i < o.exec.n_argv; i++)
        if ((i && cdn_buf_append(&cmdline, " ", 1) < 0) ||
            cdn_buf_append(&cmdline, o.exec.argv[i], strlen(o.exec.argv[i])) < 0 ||
            (i + 1 == o.exec.n_argv && cdn_buf_append(&cmdline, "", 1) < 0)) {
            cdn_buf_free(&cmdline);
            return CLI_EXIT_FAILURE;
        }

    cli_catch_interrupts();
    signal(SIGPIPE, SIG_IGN);

    struct cli_own_daemon od = {0};
    int code = CLI_EXIT_FAILURE;
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (!cli_remote_given(&o.r)) {
        cdn_err *e = NULL;
        struct cli_own_daemon_opts oo = {.state = o.state,
                                         .images = o.images,
                                         .uri = o.uri,
                                         .accel = o.accel,
                                         .default_policy = "none", /* no --policy: not gated */
                                         .boot_timeout_s = o.create.boot_timeout_seconds,
                                         .approval_timeout_s = APPROVAL_WAIT_MAX};
        if (cli_own_daemon_start(&oo, &od, &e) < 0) {
            fprintf(stderr, "cordon run: starting its daemon: %s\n", cdn_err_msg(e));
            cdn_err_free(e);
            cli_own_daemon_stop(&od);
            cdn_buf_free(&cmdline);
            return CLI_EXIT_FAILURE;
        }
        o.r.addr = od.addr;
    }
    if (cli_remote_open("run", &o.r, &c) == 0)
        code = run_on(c, &o, (const char *)cdn_buf_head(&cmdline));
    cdn_client_freep(&c);
    cli_own_daemon_stop(&od);
    cdn_buf_free(&cmdline);
    return code;
}
