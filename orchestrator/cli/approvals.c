/* SPDX-License-Identifier: Apache-2.0 */
/* cordon approvals | approve ID | deny ID: commands waiting for a person, from any terminal. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "approval.h"
#include "cli.h"

static int parse(const char *cmd, int argc, char **argv, const char **state, bool *all, bool *json,
                 const char **id) {
    static const struct option longopts[] = {{"state", required_argument, NULL, 's'},
                                             {"all", no_argument, NULL, 'a'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    *state = cli_default_state();
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 's')
            *state = optarg;
        else if (c == 'a' && all)
            *all = true;
        else if (c == 'j' && json)
            *json = true;
        else {
            fprintf(c == 'h' ? stdout : stderr, "usage: cordon %s [--state DIR]%s\n", cmd,
                    id ? " ID" : " [--all] [--json]");
            if (c == 'h')
                exit(0);
            return -1;
        }
    }
    if (id) {
        if (optind + 1 != argc) {
            fprintf(stderr, "usage: cordon %s [--state DIR] ID\n", cmd);
            return -1;
        }
        *id = argv[optind];
    } else if (optind != argc) {
        fprintf(stderr, "cordon %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return -1;
    }
    return 0;
}

int cli_approvals(int argc, char **argv) {
    const char *state;
    bool all = false, json = false;
    if (parse("approvals", argc, argv, &state, &all, &json, NULL) < 0)
        return CLI_EXIT_FAILURE;
    json_t *list = NULL;
    cdn_err *err = NULL;
    if (cdn_approval_list(state, all, &list, &err) < 0) {
        fprintf(stderr, "cordon approvals: %s\n", cdn_err_msg(err));
        cdn_err_free(err);
        return CLI_EXIT_FAILURE;
    }
    if (json) {
        json_dumpf(list, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else if (!json_array_size(list)) {
        printf("no %s approvals\n", all ? "" : "pending");
    }
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) {
        if (json)
            break;
        printf("%s  %s  task %s  requested %s\n", json_string_value(json_object_get(o, "id")),
               json_string_value(json_object_get(o, "status")),
               json_string_value(json_object_get(o, "task")),
               json_string_value(json_object_get(o, "requested")));
        size_t j;
        json_t *p;
        json_array_foreach(json_object_get(o, "parts"), j, p) {
            printf("    %-8s", json_string_value(json_object_get(p, "action")));
            size_t k;
            json_t *w;
            json_array_foreach(json_object_get(p, "argv"), k, w)
                printf(" %s", json_string_value(w));
            const char *reason = json_string_value(json_object_get(p, "reason"));
            printf("   (%s%s%s)\n", json_string_value(json_object_get(p, "rule")),
                   reason ? ": " : "", reason ? reason : "");
        }
        const char *by = json_string_value(json_object_get(o, "decided_by"));
        if (by)
            printf("    decided by %s\n", by);
    }
    json_decref(list);
    return 0;
}

static int decide(const char *cmd, int argc, char **argv, enum cdn_approval_status to) {
    const char *state, *id;
    if (parse(cmd, argc, argv, &state, NULL, NULL, &id) < 0)
        return CLI_EXIT_FAILURE;
    char me[256];
    cdn_approval_whoami(me, sizeof(me));
    cdn_err *err = NULL;
    if (cdn_approval_decide(state, id, to, me, &err) < 0) {
        fprintf(stderr, "cordon %s: %s\n", cmd, cdn_err_msg(err));
        cdn_err_free(err);
        return CLI_EXIT_FAILURE;
    }
    printf("%s %s by %s\n", id, cdn_approval_status_name(to), me);
    return 0;
}

int cli_approve(int argc, char **argv) {
    return decide("approve", argc, argv, CDN_APPROVAL_APPROVED);
}
int cli_deny(int argc, char **argv) { return decide("deny", argc, argv, CDN_APPROVAL_DENIED); }
