/* SPDX-License-Identifier: Apache-2.0 */
/* cordon audit verify|show TASK|DIR: a task's audit trail checked against its signed manifest
 * (naming the first line edited, removed or reordered), or printed for a person. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "evidence.h"
#include "fsutil.h"

#define EXIT_TAMPERED 1

static int usage(FILE *f) {
    fputs(
        "usage: cordon audit verify [--state DIR] [--key PUB] TASK|DIR\n"
        "       cordon audit show [--state DIR] TASK|DIR\n"
        "\n"
        "verify checks the manifest's signature with the host's public key (--key, default\n"
        "STATE/keys/host-ed25519.pub), then the audit trail's chain against the signed head,\n"
        "and names the first line edited, removed or reordered (exit 1). show prints the trail.\n",
        f);
    return CLI_EXIT_FAILURE;
}

/* The evidence folder of TASK (in the state folder) or DIR (the folder itself, or a task's). */
static int evidence_dir(const char *state, const char *arg, char *out, size_t size) {
    struct stat st;
    static const char *const tails[] = {"/evidence", ""}; /* a task's folder, or the evidence */
    if (strchr(arg, '/'))
        for (int i = 0; i < 2; i++) {
            snprintf(out, size, "%s%s", arg, tails[i]);
            char m[4500];
            snprintf(m, sizeof(m), "%s/manifest.json", out);
            if (stat(m, &st) == 0)
                return 0;
        }
    size_t n = strlen(arg);
    if (n && n <= 64 && strspn(arg, "0123456789abcdef") == n) {
        snprintf(out, size, "%s/tasks/%s/evidence", state, arg);
        if (stat(out, &st) == 0)
            return 0;
    }
    fprintf(stderr, "cordon audit: no evidence for '%s' (a task id in %s, or a folder)\n", arg,
            state);
    return -1;
}

static int verify(const char *dir, const char *key) {
    char why[1024];
    cdn_err *e = NULL;
    if (cdn_evidence_verify(dir, key, why, sizeof(why), &e) < 0) {
        fprintf(stderr, "cordon audit: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        return CLI_EXIT_FAILURE;
    }
    if (*why) {
        printf("%s: NOT verified: %s\n", dir, why);
        return EXIT_TAMPERED;
    }
    json_t *m = NULL;
    if (cdn_evidence_load(dir, &m, NULL) == 0) {
        json_t *a = json_object_get(m, "audit");
        printf(
            "%s: verified: %lld lines chained to head %.16s..., signed by ed25519 key %.16s...\n",
            dir, (long long)json_integer_value(json_object_get(a, "lines")),
            json_string_value(json_object_get(a, "head")) ?: "?",
            json_string_value(json_object_get(json_object_get(m, "signer"), "public_key_sha256"))
                ?: "?");
        json_decref(m);
    }
    return 0;
}

static int show(const char *dir) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
    _cleanup_free_ char *text = NULL;
    size_t len;
    cdn_err *e = NULL;
    if (cdn_read_file(path, CDN_EVIDENCE_AUDIT_MAX, &text, &len, &e) < 0) {
        fprintf(stderr, "cordon audit: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        return CLI_EXIT_FAILURE;
    }
    for (char *line = text, *end; *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end)
            break;
        json_t *o = json_loadb(line, (size_t)(end - line), 0, NULL);
        json_t *v = json_object_get(o, "value");
        _cleanup_free_ char *fields = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        printf("%4lld  %s  %-16s %s\n", (long long)json_integer_value(json_object_get(o, "seq")),
               json_string_value(json_object_get(o, "at")) ?: "?",
               json_string_value(json_object_get(o, "event")) ?: "(not a JSON line)",
               fields ? fields : "");
        json_decref(o);
    }
    return 0;
}

int cli_audit(int argc, char **argv) {
    static const struct option longopts[] = {{"state", required_argument, NULL, 's'},
                                             {"key", required_argument, NULL, 'k'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *state = cli_default_state(), *key = NULL;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 's')
            state = optarg;
        else if (c == 'k')
            key = optarg;
        else if (c == 'h') {
            usage(stdout);
            return 0;
        } else
            return usage(stderr);
    }
    if (optind + 2 != argc)
        return usage(stderr);
    const char *sub = argv[optind];
    if (strcmp(sub, "verify") != 0 && strcmp(sub, "show") != 0)
        return usage(stderr);
    char dir[4300], pub[4300];
    if (evidence_dir(state, argv[optind + 1], dir, sizeof(dir)) < 0)
        return CLI_EXIT_FAILURE;
    snprintf(pub, sizeof(pub), "%s/keys/host-ed25519.pub", state);
    return strcmp(sub, "verify") == 0 ? verify(dir, key ? key : pub) : show(dir);
}
