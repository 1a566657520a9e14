/* SPDX-License-Identifier: Apache-2.0 */
/* cordon approvals | approve ID | deny ID through cordond: the caller's sandboxes' commands
 * waiting for a person, decided as the caller (its tenant is recorded as who decided). */
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

int cli_approvals_remote(int argc, char **argv) {
    static const struct option longopts[] = {{"all", no_argument, NULL, 'a'},
                                             {"sandbox", required_argument, NULL, 's'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    struct cli_remote r;
    cli_remote_init(&r);
    Cordon__V1__ListApprovalsRequest q = CORDON__V1__LIST_APPROVALS_REQUEST__INIT;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 'a')
            q.include_decided = true;
        else if (c == 's')
            q.sandbox_id = optarg;
        else if (!cli_remote_option(&r, c, optarg)) {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: cordon approvals [--all] [--sandbox ID] [OPTIONS]\n\n"
                    "Commands of the caller's sandboxes waiting for a person (--all: decided "
                    "ones too).\n\noptions:\n" CLI_REMOTE_USAGE
                    "  --state DIR        the approvals of `cordon run` tasks in DIR instead\n");
            return c == 'h' ? 0 : CLI_EXIT_FAILURE;
        }
    }
    if (optind != argc)
        return CLI_EXIT_FAILURE;
    ProtobufCMessage *m = NULL;
    int code = cli_remote_unary("approvals", &r, "ListApprovals", &q.base,
                                &cordon__v1__list_approvals_response__descriptor, &m);
    if (code)
        return code;
    Cordon__V1__ListApprovalsResponse *l = (Cordon__V1__ListApprovalsResponse *)m;
    if (r.json) {
        json_t *a = json_array();
        for (size_t i = 0; i < l->n_approvals; i++)
            json_array_append_new(a, cli_approval_json(l->approvals[i]));
        cli_json_print(a);
    } else if (!l->n_approvals) {
        printf("no %sapprovals\n", q.include_decided ? "" : "pending ");
    }
    for (size_t i = 0; !r.json && i < l->n_approvals; i++)
        print_approval(l->approvals[i]);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int decide(const char *cmd, int argc, char **argv, bool approve) {
    struct cli_remote r;
    char usage[256];
    snprintf(usage, sizeof(usage),
             "usage: cordon %s [OPTIONS] ID\n\nWith --state DIR: a `cordon run` task's "
             "request in DIR.\n",
             cmd);
    if (cli_remote_parse(argc, argv, &r, usage) < 0)
        return CLI_EXIT_FAILURE;
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: cordon %s [OPTIONS] ID\n", cmd);
        return CLI_EXIT_FAILURE;
    }
    Cordon__V1__DecideRequest q = CORDON__V1__DECIDE_REQUEST__INIT;
    q.approval_id = argv[optind];
    q.approve = approve;
    ProtobufCMessage *m = NULL;
    int code = cli_remote_unary(cmd, &r, "Decide", &q.base, &cordon__v1__approval__descriptor, &m);
    if (code)
        return code;
    const Cordon__V1__Approval *a = (const Cordon__V1__Approval *)m;
    if (r.json)
        cli_json_print(cli_approval_json(a));
    else
        printf("%s %s by %s\n", a->id, approve ? "approved" : "denied", a->decided_by);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int cli_approve_remote(int argc, char **argv) { return decide("approve", argc, argv, true); }
int cli_deny_remote(int argc, char **argv) { return decide("deny", argc, argv, false); }
