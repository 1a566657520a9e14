/* SPDX-License-Identifier: Apache-2.0 */
/* cordon approvals | approve ID | deny ID: the caller's sandboxes' commands waiting for a person,
 * decided as the caller (its tenant is recorded as who decided), through cordond, or through the
 * daemon of each `cordon run` in a state folder (--state DIR, or when no cordond is there). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "remote.h"

static void print_approval(const Cordon__V1__Approval *a) {
    json_t *j = cli_approval_json(a);
    printf("%s  %s  sandbox %s  requested %s\n", a->id,
           json_string_value(json_object_get(j, "status")), a->sandbox_id,
           json_string_value(json_object_get(j, "requested")));
    json_decref(j);
    for (size_t i = 0; i < a->n_parts; i++) {
        const Cordon__V1__ApprovalPart *p = a->parts[i];
        printf("    %-8s", p->action);
        for (size_t k = 0; k < p->n_argv; k++)
            printf(" %s", p->argv[k]);
        printf("   (%s%s%s)\n", p->rule, *p->reason ? ": " : "", p->reason);
    }
    if (*a->decided_by)
        printf("    decided by %s\n", a->decided_by);
}

/* The daemons to ask: the one the options name, or each `cordon run` of the state folder (its
 * address in STATE/runs/X/addr). */
struct targets {
    char *addrs[256];
    size_t n;
    bool local;
    const char *state;
};

static void targets_free(struct targets *t) {
    for (size_t i = 0; i < t->n; i++)
        free(t->addrs[i]);
}

static void find_runs(struct targets *t) {
    char runs[4200];
    snprintf(runs, sizeof(runs), "%s/runs", t->state);
    _cleanup_(closedirp) DIR *d = opendir(runs);
    for (struct dirent *e; d && t->n < 256 && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[4500], addr[4200] = "";
        snprintf(path, sizeof(path), "%s/%s/addr", runs, e->d_name);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (f && fgets(addr, sizeof(addr), f) && strncmp(addr, "unix:", 5) == 0) {
            addr[strcspn(addr, "\n")] = '\0';
            t->addrs[t->n++] = strdup(addr);
        }
    }
}

/* Options: the remote ones, --state, and the subcommand's (c for each, via opt). */
static int parse(int argc, char **argv, const struct option *own, const char *usage,
                 struct cli_remote *r, struct targets *t, bool (*opt)(void *, int, const char *),
                 void *ud) {
    struct option longopts[16];
    size_t n = 0;
    for (; own && own[n].name && n < 8; n++)
        longopts[n] = own[n];
    const struct option common[] = {{"state", required_argument, NULL, 'S'},
                                    {"help", no_argument, NULL, 'h'},
                                    CLI_REMOTE_LONGOPTS,
                                    {NULL, 0, NULL, 0}};
    memcpy(longopts + n, common, sizeof(common));
    cli_remote_init(r);
    *t = (struct targets){.state = cli_default_state()};
    bool state_given = false;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 'S') {
            t->state = optarg;
            state_given = true;
        } else if (!cli_remote_option(r, c, optarg) && !(opt && opt(ud, c, optarg))) {
            fprintf(c == 'h' ? stdout : stderr,
                    "%s\noptions:\n" CLI_REMOTE_USAGE
                    "  --state DIR        ask the `cordon run` tasks of DIR instead (the default\n"
                    "                     when no cordond is there; $CORDON_STATE)\n",
                    usage);
            if (c == 'h')
                exit(0);
            return -1;
        }
    }
    if (state_given && cli_remote_given(r)) {
        fprintf(stderr, "cordon: --state and --addr name two places to ask; give one\n");
        return -1;
    }
    t->local = state_given || !cli_remote_wanted(r);
    if (t->local)
        find_runs(t);
    return 0;
}

static int open_at(const char *cmd, const struct cli_remote *r, const char *addr,
                   struct cdn_client **c) {
    struct cli_remote at = *r;
    if (addr)
        at.addr = addr;
    return cli_remote_open(cmd, &at, c);
}

static bool list_opt(void *ud, int c, const char *arg) {
    Cordon__V1__ListApprovalsRequest *q = ud;
    if (c == 'a')
        q->include_decided = true;
    else if (c == 's')
        q->sandbox_id = (char *)arg;
    else
        return false;
    return true;
}

int cli_approvals(int argc, char **argv) {
    static const struct option own[] = {{"all", no_argument, NULL, 'a'},
                                        {"sandbox", required_argument, NULL, 's'},
                                        {NULL, 0, NULL, 0}};
    struct cli_remote r;
    struct targets t;
    Cordon__V1__ListApprovalsRequest q = CORDON__V1__LIST_APPROVALS_REQUEST__INIT;
    if (parse(argc, argv, own,
              "usage: cordon approvals [--all] [--sandbox ID] [OPTIONS]\n\nCommands of the "
              "caller's sandboxes waiting for a person (--all: decided ones too).\n",
              &r, &t, list_opt, &q) < 0 ||
        optind != argc) {
        targets_free(&t);
        return CLI_EXIT_FAILURE;
    }
    json_t *all = json_array();
    size_t shown = 0;
    int code = 0;
    for (size_t i = 0; i < (t.local ? t.n : 1) && !code; i++) {
        _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
        ProtobufCMessage *m = NULL;
        cdn_err *err = NULL;
        if (open_at("approvals", &r, t.local ? t.addrs[i] : NULL, &c) < 0) {
            code = CLI_EXIT_FAILURE;
            break;
        }
        int rc = cdn_client_call(c, "ListApprovals", &q.base,
                                 &cordon__v1__list_approvals_response__descriptor, &m, 60000, &err);
        if (rc < 0 && t.local) { /* a run that ended meanwhile */
            cdn_err_free(err);
            continue;
        }
        if (rc < 0) {
            code = cli_remote_fail("approvals", rc, err);
            break;
        }
        const Cordon__V1__ListApprovalsResponse *l = (const void *)m;
        for (size_t k = 0; k < l->n_approvals; k++, shown++)
            if (r.json)
                json_array_append_new(all, cli_approval_json(l->approvals[k]));
            else
                print_approval(l->approvals[k]);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if (!code && r.json)
        cli_json_print(json_incref(all));
    else if (!code && !shown)
        printf("no %sapprovals%s\n", q.include_decided ? "" : "pending ",
               t.local ? " (no cordond; the `cordon run` tasks of the state folder)" : "");
    json_decref(all);
    targets_free(&t);
    return code;
}

static int decide(const char *cmd, int argc, char **argv, bool approve) {
    char usage[256];
    snprintf(usage, sizeof(usage),
             "usage: cordon %s [OPTIONS] ID\n\nDecides a command waiting for a person (the "
             "first decision stands).\n",
             cmd);
    struct cli_remote r;
    struct targets t;
    if (parse(argc, argv, NULL, usage, &r, &t, NULL, NULL) < 0 || optind + 1 != argc) {
        if (optind + 1 != argc)
            fprintf(stderr, "usage: cordon %s [OPTIONS] ID\n", cmd);
        targets_free(&t);
        return CLI_EXIT_FAILURE;
    }
    Cordon__V1__DecideRequest q = CORDON__V1__DECIDE_REQUEST__INIT;
    q.approval_id = argv[optind];
    q.approve = approve;
    ProtobufCMessage *m = NULL;
    cdn_err *err = NULL;
    int rc = -ENOENT;
    for (size_t i = 0; i < (t.local ? t.n : 1) && rc == -ENOENT; i++) {
        _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
        cdn_err_free(err);
        err = NULL;
        if (open_at(cmd, &r, t.local ? t.addrs[i] : NULL, &c) < 0) {
            targets_free(&t);
            return CLI_EXIT_FAILURE;
        }
        rc = cdn_client_call(c, "Decide", &q.base, &cordon__v1__approval__descriptor, &m, 60000,
                             &err);
        if (rc < 0 && t.local && rc != -EBADFD)
            rc = -ENOENT; /* not that run's, or it ended meanwhile: the next one */
    }
    targets_free(&t);
    if (rc < 0 && t.local && rc == -ENOENT) {
        cdn_err_free(err);
        fprintf(stderr, "cordon %s: no approval %s waits in a `cordon run` of %s\n", cmd,
                q.approval_id, t.state);
        return CLI_EXIT_FAILURE;
    }
    if (rc < 0)
        return cli_remote_fail(cmd, rc, err);
    const Cordon__V1__Approval *a = (const Cordon__V1__Approval *)m;
    if (r.json)
        cli_json_print(cli_approval_json(a));
    else
        printf("%s %s by %s\n", a->id, approve ? "approved" : "denied", a->decided_by);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int cli_approve(int argc, char **argv) { return decide("approve", argc, argv, true); }
int cli_deny(int argc, char **argv) { return decide("deny", argc, argv, false); }
