/* SPDX-License-Identifier: Apache-2.0 */
/* cordon review ID | review approve|reject ID [--comment TEXT]: the review gate. The summary is
 * what a reviewer needs before deciding (cordond draws it from the evidence); the decision is
 * recorded with the caller's identity. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "remote.h"

static void print_argv(const json_t *argv) {
    size_t i;
    json_t *a;
    json_array_foreach(argv, i, a) printf("%s%s", i ? " " : "", json_string_value(a));
}

static void print_command(const json_t *c) {
    char how[48];
    if (json_is_true(json_object_get(c, "timed_out")))
        snprintf(how, sizeof(how), "timed out");
    else if (json_object_get(c, "signal"))
        snprintf(how, sizeof(how), "signal %lld", json_integer_value(json_object_get(c, "signal")));
    else if (json_object_get(c, "exit_code"))
        snprintf(how, sizeof(how), "exit %lld",
                 json_integer_value(json_object_get(c, "exit_code")));
    else
        snprintf(how, sizeof(how), "no exit");
    printf("  %-10s ", how);
    print_argv(json_object_get(c, "argv"));
    printf("\n");
}

static const char *approval_status(const json_t *d) {
    return json_string_value(json_object_get(json_object_get(d, "approval"), "status"));
}

static void print_summary(const Cordon__V1__Sandbox *sb, const json_t *s) {
    const json_t *diff = json_object_get(s, "diff");
    printf("sandbox %s (%s%s%s) on %s\n", sb->id, *sb->review ? "review " : "",
           *sb->review ? sb->review : "", *sb->review ? "" : "no review", sb->repo);
    printf("base %s -> result %s\n", json_string_value(json_object_get(s, "base")) ?: "-",
           json_string_value(json_object_get(s, "result")) ?: "-");
    printf("diff: %lld files changed, %lld insertions(+), %lld deletions(-)\n",
           json_integer_value(json_object_get(diff, "files_changed")),
           json_integer_value(json_object_get(diff, "insertions")),
           json_integer_value(json_object_get(diff, "deletions")));
    size_t i;
    json_t *v;
    const json_t *cmds = json_object_get(s, "commands"), *failed = json_object_get(s, "failed"),
                 *refused = json_object_get(s, "refused"),
                 *approvals = json_object_get(s, "approvals");
    printf("commands (%zu):\n", json_array_size(cmds));
    json_array_foreach(cmds, i, v) print_command(v);
    printf("failed or not run (%zu):\n", json_array_size(failed) + json_array_size(refused));
    json_array_foreach(failed, i, v) print_command(v);
    json_array_foreach(refused, i, v) {
        const char *st = approval_status(v);
        printf("  %-10s ", st ? st : "refused");
        print_argv(json_object_get(v, "argv"));
        printf("\n");
    }
    printf("approvals (%zu):\n", json_array_size(approvals));
    json_array_foreach(approvals, i, v) {
        const json_t *a = json_object_get(v, "approval");
        printf("  %s by %s: ", json_string_value(json_object_get(a, "status")) ?: "?",
               json_string_value(json_object_get(a, "by")) ?: "?");
        print_argv(json_object_get(v, "argv"));
        printf("\n");
    }
    const json_t *eg = json_object_get(s, "egress");
    printf("egress: %lld allowed, %lld denied\n",
           json_integer_value(json_object_get(eg, "allowed")),
           json_integer_value(json_object_get(eg, "denied")));
    json_array_foreach(json_object_get(eg, "destinations"), i, v)
        printf("  %-8s %s:%lld x%lld (%lld bytes up, %lld down) by %s\n",
               json_string_value(json_object_get(v, "decision")),
               json_string_value(json_object_get(v, "host")),
               json_integer_value(json_object_get(v, "port")),
               json_integer_value(json_object_get(v, "count")),
               json_integer_value(json_object_get(v, "bytes_up")),
               json_integer_value(json_object_get(v, "bytes_down")),
               json_string_value(json_object_get(v, "rule")) ?: "-");
    const json_t *deps = json_object_get(s, "dependencies");
    printf("dependency changes (%zu files):\n", json_array_size(deps));
    json_array_foreach(deps, i, v) {
        size_t k;
        json_t *ch;
        json_array_foreach(json_object_get(v, "changes"), k, ch)
            printf("  %s (%s): %s %s -> %s\n", json_string_value(json_object_get(v, "file")),
                   json_string_value(json_object_get(v, "manager")),
                   json_string_value(json_object_get(ch, "name")) ?: "?",
                   json_string_value(json_object_get(ch, "old")) ?: "(none)",
                   json_string_value(json_object_get(ch, "new")) ?: "(removed)");
    }
    const json_t *limits = json_object_get(s, "limits_hit");
    if (json_array_size(limits)) {
        printf("limits hit (%zu):\n", json_array_size(limits));
        json_array_foreach(limits, i, v)
            printf("  %s: %s\n", json_string_value(json_object_get(v, "what")) ?: "?",
                   json_string_value(json_object_get(v, "detail")) ?: "");
    }
    if (*sb->reviewed_by)
        printf("%s by %s%s%s%s%s\n", sb->review, sb->reviewed_by, *sb->review_comment ? ": " : "",
               sb->review_comment, *sb->published ? "; " : "", sb->published);
    else if (sb->state == CORDON__V1__SANDBOX_STATE__AWAITING_REVIEW)
        printf("decide: cordon review approve %s | cordon review reject %s [--comment TEXT]\n",
               sb->id, sb->id);
}

static void print_decision(const Cordon__V1__Sandbox *sb) {
    printf("%s %s by %s%s%s\n", sb->id, sb->review, sb->reviewed_by, *sb->published ? ": " : "",
           sb->published);
}

int cli_review(int argc, char **argv) {
    static const struct option longopts[] = {{"comment", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    static const char usage[] =
        "usage: cordon review [OPTIONS] ID\n"
        "       cordon review approve|reject [--comment TEXT] [OPTIONS] ID\n\n"
        "The first shows what a reviewer needs: the diff's size, every command and how it\n"
        "ended, the failed and refused ones, the approvals given, egress per destination,\n"
        "dependency changes, limits hit (`cordon diff ID` for the patch). approve first does\n"
        "what the policy's review.merge says (push or merge), then records the decision with\n"
        "your identity; reject leaves every branch as it is.\n\noptions:\n";
    struct cli_remote r;
    cli_remote_init(&r);
    const char *comment = NULL;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 'c') {
            comment = optarg;
        } else if (!cli_remote_option(&r, c, optarg)) {
            fprintf(c == 'h' ? stdout : stderr, "%s%s", usage, CLI_REMOTE_USAGE);
            if (c == 'h')
                exit(0);
            return CLI_EXIT_FAILURE;
        }
    }
    int left = argc - optind;
    bool decide =
        left == 2 && (!strcmp(argv[optind], "approve") || !strcmp(argv[optind], "reject"));
    if (!(left == 1 || decide) || (comment && !decide)) {
        fprintf(stderr, "%s", usage);
        return CLI_EXIT_FAILURE;
    }
    ProtobufCMessage *m = NULL;
    if (decide) {
        Cordon__V1__DecideReviewRequest q = CORDON__V1__DECIDE_REVIEW_REQUEST__INIT;
        q.sandbox_id = argv[optind + 1];
        q.approve = strcmp(argv[optind], "approve") == 0;
        q.comment = (char *)(comment ? comment : "");
        return cli_remote_sandbox_call("review", &r, "DecideReview", &q.base, 300000,
                                       print_decision);
    }
    Cordon__V1__GetReviewRequest q = CORDON__V1__GET_REVIEW_REQUEST__INIT;
    q.sandbox_id = argv[optind];
    int code =
        cli_remote_unary("review", &r, "GetReview", &q.base, &cordon__v1__review__descriptor, &m);
    if (code)
        return code;
    const Cordon__V1__Review *rv = (const Cordon__V1__Review *)m;
    json_error_t je;
    json_t *s = json_loads(rv->summary_json, 0, &je);
    if (r.json) {
        json_object_set_new(s, "sandbox", cli_sandbox_json(rv->sandbox));
        cli_json_print(s);
    } else {
        print_summary(rv->sandbox, s);
        json_decref(s);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
