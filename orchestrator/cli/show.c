/* SPDX-License-Identifier: Apache-2.0 */
/* cordon show TASK and cordon diff TASK: a task's evidence, for a person or a program. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "remote.h"
#include "evidence.h"

static int evidence_file(const char *cmd, const char *state, const char *task, const char *name,
                         char *out, size_t size) {
    size_t n = strlen(task);
    if (n == 0 || n > 64 || strspn(task, "0123456789abcdefABCDEF-_") != n) {
        fprintf(stderr, "cordon %s: '%s' is not a task id\n", cmd, task);
        return -1;
    }
    snprintf(out, size, "%s/tasks/%s/evidence/%s", state, task, name);
    return 0;
}

static int copy_out(const char *cmd, const char *path) {
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "cordon %s: %s: %s\n", cmd, path, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;)
        if (fwrite(buf, 1, n, stdout) != n)
            return CLI_EXIT_FAILURE;
    return 0;
}

static const char *str(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static void print_stream(const char *name, json_t *s) {
    if (!s)
        return;
    printf("      %s: %lld bytes, sha256 %s (%s)\n", name,
           (long long)json_integer_value(json_object_get(s, "bytes")), str(s, "sha256"),
           str(s, "path"));
}

void cli_manifest_print(json_t *m) {
    printf("task       %s\n", str(m, "task"));
    printf("created    %s\n", str(m, "created"));
    printf("vm         %s, image %s, %s, channel %s\n", str(m, "vm"), str(m, "image"),
           str(m, "accel"), str(m, "transport"));
    if (json_object_get(m, "repo")) {
        printf("repo       %s (ref %s)\n", str(m, "repo_url"), str(m, "ref"));
        printf("base       %s\n", str(m, "base"));
        printf("result     %s on %s\n", str(m, "result"), str(m, "branch"));
    }
    json_t *d = json_object_get(m, "diff");
    if (d)
        printf("diff       %lld files changed, +%lld -%lld (%lld added, %lld deleted, %lld "
               "modified, %lld renamed, %lld binary): diff.patch\n",
               (long long)json_integer_value(json_object_get(d, "files_changed")),
               (long long)json_integer_value(json_object_get(d, "insertions")),
               (long long)json_integer_value(json_object_get(d, "deletions")),
               (long long)json_integer_value(json_object_get(d, "added")),
               (long long)json_integer_value(json_object_get(d, "deleted")),
               (long long)json_integer_value(json_object_get(d, "modified")),
               (long long)json_integer_value(json_object_get(d, "renamed")),
               (long long)json_integer_value(json_object_get(d, "binary")));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(m, "commands"), i, c) {
        printf("command %zu ", i + 1);
        size_t j;
        json_t *a;
        json_array_foreach(json_object_get(c, "argv"), j, a)
            printf("%s%s", j ? " " : "", json_string_value(a));
        printf("\n      in %s, %s .. %s, ", str(c, "cwd"), str(c, "started"), str(c, "ended"));
        if (json_object_get(c, "signal"))
            printf("killed by signal %lld",
                   (long long)json_integer_value(json_object_get(c, "signal")));
        else if (json_object_get(c, "exit_code"))
            printf("exit %lld", (long long)json_integer_value(json_object_get(c, "exit_code")));
        else
            printf("no exit status");
        printf("%s%s\n", json_is_true(json_object_get(c, "timed_out")) ? ", timed out" : "",
               json_is_true(json_object_get(c, "truncated")) ? ", output truncated" : "");
        print_stream("stdout", json_object_get(c, "stdout"));
        print_stream("stderr", json_object_get(c, "stderr"));
    }
    json_array_foreach(json_object_get(m, "artifacts"), i, c)
        printf("artifact   %s: %lld bytes, sha256 %s\n", str(c, "name"),
               (long long)json_integer_value(json_object_get(c, "bytes")), str(c, "sha256"));
    json_array_foreach(json_object_get(m, "limits_hit"), i, c)
        printf("limit hit  %s: %s\n", str(c, "limit"), str(c, "detail"));
    if (json_object_get(m, "error"))
        printf("error      %s\n", str(m, "error"));
}

static int usage(const char *cmd, bool json_opt) {
    fprintf(stderr, "usage: cordon %s [--state DIR]%s TASK\n", cmd, json_opt ? " [--json]" : "");
    return -1;
}

/* json is NULL for commands without --json. */
static int parse_common(const char *cmd, int argc, char **argv, bool *json, const char **state,
                        const char **task) {
    static const struct option longopts[] = {{"state", required_argument, NULL, 's'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    *state = cli_default_state();
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 's')
            *state = optarg;
        else if (c == 'j' && json)
            *json = true;
        else if (c == 'h') {
            printf("usage: cordon %s [--state DIR]%s TASK\n", cmd, json ? " [--json]" : "");
            exit(0);
        } else
            return usage(cmd, json);
    }
    if (optind + 1 != argc)
        return usage(cmd, json);
    *task = argv[optind];
    return 0;
}

int cli_show(int argc, char **argv) {
    bool json = false;
    const char *state, *task;
    char dir[4400];
    if (parse_common("show", argc, argv, &json, &state, &task) < 0 ||
        evidence_file("show", state, task, "", dir, sizeof(dir)) < 0)
        return CLI_EXIT_FAILURE;
    json_t *m = NULL;
    cdn_err *e = NULL;
    if (cdn_evidence_load(dir, &m, &e) < 0) { /* the manifest and the journal since */
        fprintf(stderr, "cordon show: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        return CLI_EXIT_FAILURE;
    }
    if (json)
        cli_json_print(m);
    else {
        cli_manifest_print(m);
        json_decref(m);
    }
    return 0;
}

int cli_diff(int argc, char **argv) {
    const char *state, *task;
    char path[4400];
    if (parse_common("diff", argc, argv, NULL, &state, &task) < 0 ||
        evidence_file("diff", state, task, "diff.patch", path, sizeof(path)) < 0)
        return CLI_EXIT_FAILURE;
    return copy_out("diff", path);
}
