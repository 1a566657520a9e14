/* SPDX-License-Identifier: Apache-2.0 */
/* cordon create | ls | stop | rm: sandboxes kept by cordond. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "remote.h"

#define MAX_LABELS 64
#define POLICY_TEXT_MAX (1u << 20)

static int parse_u32(const char *cmd, const char *what, const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > UINT32_MAX) {
        fprintf(stderr, "cordon %s: %s takes a number, not '%s'\n", cmd, what, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* KEY=VALUE into a map entry of either request type (their layouts are the same). */
static int parse_label(const char *cmd, char *kv, char **key, char **value) {
    char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "cordon %s: --label takes KEY=VALUE, not '%s'\n", cmd, kv);
        return -1;
    }
    *eq = '\0';
    *key = kv;
    *value = eq + 1;
    return 0;
}

static char *read_policy(const char *path) {
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    char *text = f ? calloc(1, POLICY_TEXT_MAX + 1) : NULL;
    size_t n = text ? fread(text, 1, POLICY_TEXT_MAX + 1, f) : 0;
    if (!text || ferror(f) || n > POLICY_TEXT_MAX) {
        fprintf(stderr, "cordon create: %s: %s\n", path,
                !f ? strerror(errno) : "unreadable, or over 1 MiB");
        free(text);
        return NULL;
    }
    return text;
}

static void create_usage(FILE *f) {
    fputs("usage: cordon create [OPTIONS]\n"
          "\n"
          "Asks cordond for a sandbox: a VM kept running for `cordon exec`, `cordon cp`,\n"
          "`cordon diff` until its TTL, `cordon stop` or `cordon rm`. Prints its id.\n"
          "\n"
          "options:\n"
          "  --repo URL|PATH    the repository to work on (a path on the daemon's host)\n"
          "  --ref REF          branch, tag or SHA (default: its HEAD)\n"
          "  --policy FILE      the policy, sent as text; or --policy-name NAME, one of the\n"
          "                     daemon's (default: the daemon's default policy)\n"
          "  --image NAME       minimal or devbox\n"
          "  --cpus N, --memory MIB, --disk MIB, --command-timeout S, --wall S   limits,\n"
          "                     within the policy's\n"
          "  --ttl S            destroy it S seconds after creation (default: the daemon's)\n"
          "  --persist          a session: kept until stopped or expired (a longer ttl allowed),\n"
          "                     pausable (cordon pause/resume), resettable, extendable\n"
          "  --owner NAME       whom the session is for (default: you), shown by cordon ls\n"
          "  --priority N       -1000..1000: among your queued sandboxes, higher starts first\n"
          "  --label KEY=VALUE  (repeatable) for `cordon ls --label`\n"
          "  --wait             return once it is ready (or failed); --wait-timeout S "
          "(300)\n" CLI_REMOTE_USAGE,
          f);
}

struct create_opts {
    struct cli_remote r;
    Cordon__V1__CreateSandboxRequest q;
    Cordon__V1__Limits limits;
    Cordon__V1__CreateSandboxRequest__LabelsEntry label_store[MAX_LABELS];
    Cordon__V1__CreateSandboxRequest__LabelsEntry *labels[MAX_LABELS];
    char *policy_text;
    bool wait, has_limits;
    uint32_t wait_timeout_s;
};

static int create_parse(int argc, char **argv, struct create_opts *o) {
    static const struct option longopts[] = {{"repo", required_argument, NULL, 'R'},
                                             {"ref", required_argument, NULL, 'r'},
                                             {"policy", required_argument, NULL, 'P'},
                                             {"policy-name", required_argument, NULL, 'N'},
                                             {"image", required_argument, NULL, 'i'},
                                             {"cpus", required_argument, NULL, 'c'},
                                             {"memory", required_argument, NULL, 'm'},
                                             {"disk", required_argument, NULL, 'd'},
                                             {"wall", required_argument, NULL, 'W'},
                                             {"command-timeout", required_argument, NULL, 't'},
                                             {"ttl", required_argument, NULL, 'T'},
                                             {"priority", required_argument, NULL, 'p'},
                                             {"label", required_argument, NULL, 'l'},
                                             {"wait", no_argument, NULL, 'w'},
                                             {"wait-timeout", required_argument, NULL, 'x'},
                                             {"persist", no_argument, NULL, 'S'},
                                             {"owner", required_argument, NULL, 'O'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    Cordon__V1__CreateSandboxRequest *q = &o->q;
    Cordon__V1__Limits *l = &o->limits;
    o->wait_timeout_s = 300;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        int rc = 0;
        switch (c) {
        case 'R': q->repo = optarg; break;
        case 'r': q->ref = optarg; break;
        case 'i': q->image = optarg; break;
        case 'P':
            if (!(o->policy_text = read_policy(optarg)))
                return -1;
            q->policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
            q->policy_text = o->policy_text;
            break;
        case 'N':
            q->policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_NAME;
            q->policy_name = optarg;
            break;
        case 'c': rc = parse_u32("create", "--cpus", optarg, &l->cpus); break;
        case 'm': rc = parse_u32("create", "--memory", optarg, &l->memory_mib); break;
        case 'd': rc = parse_u32("create", "--disk", optarg, &l->disk_mib); break;
        case 'W': rc = parse_u32("create", "--wall", optarg, &l->wall_seconds); break;
        case 't':
            rc = parse_u32("create", "--command-timeout", optarg, &l->command_timeout_seconds);
            break;
        case 'T': rc = parse_u32("create", "--ttl", optarg, &q->ttl_seconds); break;
        case 'p': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < -1000 || v > 1000) {
                fprintf(stderr, "cordon create: --priority: '%s' is not from -1000 to 1000\n",
                        optarg);
                return -1;
            }
            q->priority = (int32_t)v;
            break;
        }
        case 'x': rc = parse_u32("create", "--wait-timeout", optarg, &o->wait_timeout_s); break;
        case 'w': o->wait = true; break;
        case 'S': q->persist = true; break;
        case 'O': q->owner = optarg; break;
        case 'l':
            if (q->n_labels == MAX_LABELS) {
                fprintf(stderr, "cordon create: at most %d labels\n", MAX_LABELS);
                return -1;
            }
            cordon__v1__create_sandbox_request__labels_entry__init(&o->label_store[q->n_labels]);
            o->labels[q->n_labels] = &o->label_store[q->n_labels];
            rc = parse_label("create", optarg, &o->labels[q->n_labels]->key,
                             &o->labels[q->n_labels]->value);
            q->n_labels++;
            break;
        case 'h': create_usage(stdout); exit(0);
        default:
            if (cli_remote_option(&o->r, c, optarg))
                break;
            create_usage(stderr);
            return -1;
        }
        if (rc < 0)
            return -1;
        if (c == 'c' || c == 'm' || c == 'd' || c == 'W' || c == 't')
            o->has_limits = true;
    }
    if (optind != argc) {
        fprintf(stderr, "cordon create: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    q->labels = o->labels;
    if (o->has_limits)
        q->limits = l;
    return 0;
}

int cli_create(int argc, char **argv) {
    struct create_opts o = {0};
    cli_remote_init(&o.r);
    cordon__v1__create_sandbox_request__init(&o.q);
    cordon__v1__limits__init(&o.limits);
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    int pr = create_parse(argc, argv, &o);
    _cleanup_free_ char *policy_text = o.policy_text;
    if (pr < 0 || cli_remote_open("create", &o.r, &c) < 0)
        return CLI_EXIT_FAILURE;
    ProtobufCMessage *m = NULL;
    cdn_err *err = NULL;
    int rc = cdn_client_call(c, "CreateSandbox", &o.q.base, &cordon__v1__sandbox__descriptor, &m,
                             30000, &err);
    if (rc < 0)
        return cli_remote_fail("create", rc, err);
    Cordon__V1__Sandbox *sb = (Cordon__V1__Sandbox *)m;
    if (o.wait) {
        Cordon__V1__Sandbox *last = NULL;
        rc = cli_sandbox_wait(c, sb->id, o.wait_timeout_s, &last, &err);
        if (last) {
            protobuf_c_message_free_unpacked(&sb->base, NULL);
            sb = last;
        }
    }
    if (o.r.json)
        cli_json_print(cli_sandbox_json(sb));
    else
        printf("%s\n", sb->id);
    protobuf_c_message_free_unpacked(&sb->base, NULL);
    return rc < 0 ? cli_remote_fail("create", rc, err) : 0;
}

/* ---- ls ---- */

/* The options of both forms; *target is ID:PATH when one is given (a folder's listing). */
static int ls_parse(int argc, char **argv, struct cli_remote *r,
                    Cordon__V1__ListSandboxesRequest *q, Cordon__V1__SandboxState *states,
                    Cordon__V1__ListSandboxesRequest__LabelsEntry *store,
                    Cordon__V1__ListSandboxesRequest__LabelsEntry **labels, char **target,
                    unsigned long *max) {
    static const struct option longopts[] = {{"state", required_argument, NULL, 's'},
                                             {"max", required_argument, NULL, 'm'},
                                             {"label", required_argument, NULL, 'l'},
                                             {"owner", required_argument, NULL, 'O'},
                                             {"sessions", no_argument, NULL, 'S'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 's' && q->n_states < 8) {
            if (cli_state_parse(optarg, &states[q->n_states++]) < 0) {
                fprintf(stderr,
                        "cordon ls: no state '%s' (queued, booting, ready, paused, "
                        "stopping, stopped, failed, awaiting_review)\n",
                        optarg);
                return -1;
            }
        } else if (c == 'm') {
            char *end;
            *max = strtoul(optarg, &end, 10);
            if (*end || *max < 1 || *max > 10000) {
                fprintf(stderr, "cordon ls: --max takes 1 to 10000 (got '%s')\n", optarg);
                return -1;
            }
        } else if (c == 'O') {
            q->owner = optarg;
        } else if (c == 'S') {
            q->sessions_only = true;
        } else if (c == 'l' && q->n_labels < MAX_LABELS) {
            cordon__v1__list_sandboxes_request__labels_entry__init(&store[q->n_labels]);
            labels[q->n_labels] = &store[q->n_labels];
            if (parse_label("ls", optarg, &store[q->n_labels].key, &store[q->n_labels].value) < 0)
                return -1;
            q->n_labels++;
        } else if (!cli_remote_option(r, c, optarg)) {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: cordon ls [--state STATE]... [--label KEY=VALUE]... [--sessions] "
                    "[--owner NAME] [OPTIONS]\n"
                    "       cordon ls [--max N] [OPTIONS] ID:PATH\n"
                    "\nThe caller's sandboxes, oldest first; sessions with their owner and "
                    "expiry.\nWith ID:PATH: the entries of a folder in sandbox ID (a relative "
                    "PATH is under\n/workspace) in name order, each as itself (a symlink with its "
                    "target, not followed),\ntimes in UTC; at most --max N of them (default 1000, "
                    "up to 10000).\n\noptions:\n" CLI_REMOTE_USAGE);
            if (c == 'h')
                exit(0);
            return -1;
        }
    }
    q->states = states;
    q->labels = labels;
    bool filters = q->n_states || q->n_labels || *q->owner || q->sessions_only;
    if (argc - optind == 1 && !filters) {
        *target = argv[optind];
        return 0;
    }
    if (argc - optind == 0 && !*max)
        return 0;
    fprintf(stderr, "usage: cordon ls [--state S]... [--label K=V]... [--sessions] [--owner N]\n"
                    "       cordon ls [--max N] ID:PATH\n");
    return -1;
}

int cli_ls(int argc, char **argv) {
    struct cli_remote r;
    cli_remote_init(&r);
    Cordon__V1__ListSandboxesRequest q = CORDON__V1__LIST_SANDBOXES_REQUEST__INIT;
    Cordon__V1__SandboxState states[8];
    Cordon__V1__ListSandboxesRequest__LabelsEntry store[MAX_LABELS], *labels[MAX_LABELS];
    char *target = NULL;
    unsigned long max = 0;
    if (ls_parse(argc, argv, &r, &q, states, store, labels, &target, &max) < 0)
        return CLI_EXIT_FAILURE;
    if (target)
        return cli_ls_dir(&r, target, (uint32_t)max);
    ProtobufCMessage *m = NULL;
    int code = cli_remote_unary("ls", &r, "ListSandboxes", &q.base,
                                &cordon__v1__list_sandboxes_response__descriptor, &m);
    if (code)
        return code;
    Cordon__V1__ListSandboxesResponse *l = (Cordon__V1__ListSandboxesResponse *)m;
    json_t *all = r.json ? json_array() : NULL;
    if (!r.json)
        printf("%-16s  %-13s  %-7s  %-12s  %-8s  %s\n", "ID", "STATE", "IMAGE", "OWNER", "EXPIRES",
               "REPO");
    int64_t now = (int64_t)time(NULL) * 1000;
    for (size_t i = 0; i < l->n_sandboxes; i++) {
        const Cordon__V1__Sandbox *s = l->sandboxes[i];
        if (all) {
            json_array_append_new(all, cli_sandbox_json(s));
            continue;
        }
        char state[32], left[48] = "-";
        snprintf(state, sizeof(state), "%s%s%s", cli_state_name(s->state), *s->paused ? "/" : "",
                 s->paused);
        bool live = s->state != CORDON__V1__SANDBOX_STATE__STOPPED &&
                    s->state != CORDON__V1__SANDBOX_STATE__FAILED &&
                    s->state != CORDON__V1__SANDBOX_STATE__AWAITING_REVIEW;
        if (live && s->expires_unix_ms > now) { /* the time left, largest unit */
            int64_t sec = (s->expires_unix_ms - now) / 1000;
            if (sec >= 86400)
                snprintf(left, sizeof(left), "%lldd%lldh", (long long)(sec / 86400),
                         (long long)(sec % 86400 / 3600));
            else if (sec >= 3600)
                snprintf(left, sizeof(left), "%lldh%lldm", (long long)(sec / 3600),
                         (long long)(sec % 3600 / 60));
            else
                snprintf(left, sizeof(left), "%lldm%llds", (long long)(sec / 60),
                         (long long)(sec % 60));
        }
        printf("%-16s  %-13s  %-7s  %-12s  %-8s  %s\n", s->id, state, *s->image ? s->image : "-",
               s->persist ? s->owner : "(ephemeral)", left, *s->repo ? s->repo : "-");
    }
    if (all)
        cli_json_print(all);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* ---- stop, rm ---- */

static int stop_or_rm(const char *cmd, const char *method, int argc, char **argv) {
    struct cli_remote r;
    char usage[256];
    snprintf(usage, sizeof(usage), "usage: cordon %s [OPTIONS] ID...\n\n%s\n", cmd,
             strcmp(cmd, "rm") == 0
                 ? "Destroys each sandbox's VM and forgets it (its evidence too)."
                 : "Destroys each sandbox's VM; its record, diff and evidence stay.");
    if (cli_remote_parse(argc, argv, &r, usage) < 0)
        return CLI_EXIT_FAILURE;
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (optind == argc) {
        fprintf(stderr, "cordon %s: no sandbox given\n", cmd);
        return CLI_EXIT_FAILURE;
    }
    if (cli_remote_open(cmd, &r, &c) < 0)
        return CLI_EXIT_FAILURE;
    int code = 0;
    for (int i = optind; i < argc; i++) {
        Cordon__V1__DeleteRequest q = CORDON__V1__DELETE_REQUEST__INIT; /* = CancelRequest's */
        q.id = argv[i];
        ProtobufCMessage *m = NULL;
        cdn_err *err = NULL;
        int rc =
            cdn_client_call(c, method, &q.base,
                            strcmp(method, "Delete") == 0 ? &cordon__v1__delete_response__descriptor
                                                          : &cordon__v1__sandbox__descriptor,
                            &m, 120000, &err);
        if (rc < 0) {
            code = cli_remote_fail(cmd, rc, err);
            continue;
        }
        if (r.json && strcmp(method, "Cancel") == 0)
            cli_json_print(cli_sandbox_json((Cordon__V1__Sandbox *)m));
        else if (r.json)
            cli_json_print(json_pack("{s:s, s:b}", "id", argv[i], "deleted", 1));
        else
            printf("%s\n", argv[i]);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return code;
}

int cli_stop(int argc, char **argv) { return stop_or_rm("stop", "Cancel", argc, argv); }
int cli_rm(int argc, char **argv) { return stop_or_rm("rm", "Delete", argc, argv); }
