/* SPDX-License-Identifier: Apache-2.0 */
/* The client subcommands' common ground: finding cordond, exit codes for its errors, and how a
 * sandbox and an approval look as text and as JSON. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cleanup.h"
#include "clock.h"
#include "remote.h"

static const char *env_or(const char *v, const char *name) {
    const char *e = getenv(name);
    return v ? v : (e && *e ? e : NULL);
}

volatile sig_atomic_t cli_interrupted;

static void on_signal(int signo) {
    (void)signo;
    cli_interrupted = 1;
}

void cli_catch_interrupts(void) {
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

void cli_remote_init(struct cli_remote *r) { memset(r, 0, sizeof(*r)); }

bool cli_remote_option(struct cli_remote *r, int c, const char *arg) {
    switch (c) {
    case CLI_OPT_ADDR: r->addr = arg; return true;
    case CLI_OPT_TLS_CERT: r->tls_cert = arg; return true;
    case CLI_OPT_TLS_KEY: r->tls_key = arg; return true;
    case CLI_OPT_TLS_CA: r->tls_ca = arg; return true;
    case CLI_OPT_TLS_NAME: r->tls_server_name = arg; return true;
    case CLI_OPT_JSON: r->json = true; return true;
    default: return false;
    }
}

int cli_remote_parse(int argc, char **argv, struct cli_remote *r, const char *usage) {
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'}, CLI_REMOTE_LONGOPTS, {NULL, 0, NULL, 0}};
    cli_remote_init(r);
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;)
        if (!cli_remote_option(r, c, optarg)) {
            fprintf(c == 'h' ? stdout : stderr, "%s\noptions:\n" CLI_REMOTE_USAGE, usage);
            if (c == 'h')
                exit(0);
            return -1;
        }
    return 0;
}

bool cli_remote_given(const struct cli_remote *r) { return env_or(r->addr, "CORDON_ADDR"); }

bool cli_remote_wanted(const struct cli_remote *r) {
    if (env_or(r->addr, "CORDON_ADDR"))
        return true;
    struct stat st;
    const char *path = CDN_CLIENT_DEFAULT_ADDR + strlen("unix:");
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

int cli_remote_open(const char *cmd, const struct cli_remote *r, struct cdn_client **out) {
    struct cdn_client_opts o = {
        .addr = env_or(r->addr, "CORDON_ADDR"),
        .tls_cert = env_or(r->tls_cert, "CORDON_TLS_CERT"),
        .tls_key = env_or(r->tls_key, "CORDON_TLS_KEY"),
        .tls_ca = env_or(r->tls_ca, "CORDON_TLS_CA"),
        .tls_server_name = env_or(r->tls_server_name, "CORDON_TLS_SERVER_NAME"),
    };
    cdn_err *err = NULL;
    int rc = cdn_client_open(&o, out, &err);
    if (rc < 0)
        cli_remote_fail(cmd, rc, err);
    return rc;
}

int cli_remote_unary_timeout(const char *cmd, const struct cli_remote *r, const char *method,
                             const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                             int timeout_ms) {
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (cli_remote_open(cmd, r, &c) < 0)
        return CLI_EXIT_FAILURE;
    cdn_err *err = NULL;
    int rc = cdn_client_call(c, method, req, resp_desc, resp, timeout_ms, &err);
    return rc < 0 ? cli_remote_fail(cmd, rc, err) : 0;
}

int cli_remote_sandbox_call(const char *cmd, const struct cli_remote *r, const char *method,
                            const ProtobufCMessage *req, int timeout_ms,
                            void (*print)(const Cordon__V1__Sandbox *sb)) {
    ProtobufCMessage *m = NULL;
    int code = cli_remote_unary_timeout(cmd, r, method, req, &cordon__v1__sandbox__descriptor, &m,
                                        timeout_ms);
    if (code)
        return code;
    const Cordon__V1__Sandbox *sb = (const Cordon__V1__Sandbox *)m;
    if (r->json)
        cli_json_print(cli_sandbox_json(sb));
    else
        print(sb);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int cli_remote_unary(const char *cmd, const struct cli_remote *r, const char *method,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                     ProtobufCMessage **resp) {
    return cli_remote_unary_timeout(cmd, r, method, req, resp_desc, resp, 60000);
}

int cli_remote_fail(const char *cmd, int rc, cdn_err *err) {
    fprintf(stderr, "cordon %s: %s\n", cmd, err ? cdn_err_msg(err) : strerror(-rc));
    cdn_err_free(err);
    switch (-rc) {
    case EPERM: return CLI_EXIT_REFUSED;
    case ETIMEDOUT: return CLI_EXIT_TIMEOUT;
    case EINTR: return CLI_EXIT_INTERRUPTED;
    default: return CLI_EXIT_FAILURE;
    }
}

static const char *const state_names[] = {"unspecified", "queued",   "booting",
                                          "ready",       "stopping", "stopped",
                                          "failed",      "paused",   "awaiting_review"};

const char *cli_state_name(Cordon__V1__SandboxState s) {
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "unknown";
}

int cli_state_parse(const char *name, Cordon__V1__SandboxState *out) {
    for (size_t i = 1; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcasecmp(name, state_names[i]) == 0) {
            *out = (Cordon__V1__SandboxState)i;
            return 0;
        }
    return -EINVAL;
}

static json_t *time_json(int64_t unix_ms) {
    if (unix_ms <= 0)
        return json_null();
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    char s[32];
    gmtime_r(&t, &tm);
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(s);
}

json_t *cli_sandbox_json(const Cordon__V1__Sandbox *s) {
    json_t *labels = json_object();
    for (size_t i = 0; i < s->n_labels; i++)
        json_object_set_new(labels, s->labels[i]->key, json_string(s->labels[i]->value));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id",
                          s->id, "state", cli_state_name(s->state), "tenant", s->tenant, "repo",
                          s->repo, "base_commit", s->base_commit, "result_commit", s->result_commit,
                          "image", s->image, "accel", s->accel, "transport", s->transport, "labels",
                          labels, "created", time_json(s->created_unix_ms), "expires",
                          time_json(s->expires_unix_ms));
    if (o && *s->error)
        json_object_set_new(o, "error", json_string(s->error));
    if (o && s->persist) {
        json_object_set_new(o, "session", json_true());
        json_object_set_new(o, "owner", json_string(s->owner));
    }
    if (o && *s->paused)
        json_object_set_new(o, "paused", json_string(s->paused));
    if (o && *s->review)
        json_object_set_new(o, "review",
                            json_pack("{s:s, s:s*, s:s*, s:s*}", "state", s->review, "by",
                                      s->reviewed_by, "comment", s->review_comment, "published",
                                      s->published));
    return o;
}

void cli_sandbox_print(const Cordon__V1__Sandbox *s) {
    printf("sandbox   %s\nstate     %s%s%s%s%s%s\ntenant    %s\nimage     %s\n", s->id,
           cli_state_name(s->state), *s->paused ? " (" : "", s->paused, *s->paused ? ")" : "",
           *s->error ? ": " : "", s->error, s->tenant, s->image);
    if (s->persist)
        printf("session   owner %s\n", s->owner);
    if (*s->repo)
        printf("repo      %s\nbase      %s\nresult    %s\n", s->repo, s->base_commit,
               *s->result_commit ? s->result_commit : "(not taken yet)");
    if (*s->accel)
        printf("vm        %s over %s\n", s->accel, s->transport);
    for (size_t i = 0; i < s->n_labels; i++)
        printf("label     %s=%s\n", s->labels[i]->key, s->labels[i]->value);
    json_t *c = time_json(s->created_unix_ms), *e = time_json(s->expires_unix_ms);
    printf("created   %s\nexpires   %s\n", json_is_string(c) ? json_string_value(c) : "-",
           json_is_string(e) ? json_string_value(e) : "-");
    json_decref(c);
    json_decref(e);
}

static json_t *strv_json(char **v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

json_t *cli_approval_json(const Cordon__V1__Approval *a) {
    static const char *const status[] = {"unspecified", "pending", "approved", "denied", "expired"};
    json_t *parts = json_array();
    for (size_t i = 0; i < a->n_parts; i++) {
        const Cordon__V1__ApprovalPart *p = a->parts[i];
        json_array_append_new(parts, json_pack("{s:o, s:s, s:s, s:s}", "argv",
                                               strv_json(p->argv, p->n_argv), "action", p->action,
                                               "rule", p->rule, "reason", p->reason));
    }
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:s, s:o}", "id", a->id, "sandbox", a->sandbox_id,
                          "argv", strv_json(a->argv, a->n_argv), "parts", parts, "status",
                          (unsigned)a->status < 5 ? status[a->status] : "unknown", "requested",
                          time_json(a->requested_unix_ms));
    if (o && *a->decided_by) {
        json_object_set_new(o, "decided_by", json_string(a->decided_by));
        json_object_set_new(o, "decided", time_json(a->decided_unix_ms));
    }
    return o;
}

/* Output as a JSON string. Output that is not UTF-8 (binary) cannot be one: its bytes >= 0x80
 * become '?' and *lossy says so. */
json_t *cli_output_json(struct cdn_buf *b, bool *lossy) {
    size_t n = cdn_buf_len(b);
    *lossy = false;
    if (n == 0)
        return json_string("");
    json_t *s = json_stringn((const char *)cdn_buf_head(b), n);
    if (s)
        return s;
    *lossy = true;
    for (size_t i = 0; i < n; i++)
        if (b->data[b->head + i] >= 0x80 || b->data[b->head + i] == 0)
            b->data[b->head + i] = '?';
    return json_stringn((const char *)cdn_buf_head(b), n);
}

void cli_json_print(json_t *j) {
    json_dumpf(j, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(j);
}

int cli_sandbox_wait(struct cdn_client *c, const char *id, unsigned timeout_s,
                     Cordon__V1__Sandbox **last, cdn_err **err) {
    uint64_t deadline = timeout_s ? cdn_now_ms() + timeout_s * 1000ull : UINT64_MAX;
    Cordon__V1__GetSandboxRequest q = CORDON__V1__GET_SANDBOX_REQUEST__INIT;
    q.id = (char *)id;
    for (unsigned polls = 0;; polls++) {
        ProtobufCMessage *m = NULL;
        int r = cdn_client_call(c, "GetSandbox", &q.base, &cordon__v1__sandbox__descriptor, &m,
                                30000, err);
        if (r < 0)
            return r;
        Cordon__V1__Sandbox *sb = (Cordon__V1__Sandbox *)m;
        Cordon__V1__SandboxState st = sb->state;
        bool waiting =
            st == CORDON__V1__SANDBOX_STATE__QUEUED || st == CORDON__V1__SANDBOX_STATE__BOOTING;
        if (!waiting)
            r = st == CORDON__V1__SANDBOX_STATE__READY ? 0
                : st == CORDON__V1__SANDBOX_STATE__FAILED
                    ? cdn_err_set(err, EIO, "sandbox %s failed: %s", id, sb->error)
                    : cdn_err_set(err, EBADFD, "sandbox %s is %s", id, cli_state_name(st));
        else if (cli_interrupted)
            r = cdn_err_set(err, EINTR, "interrupted");
        else if (cdn_now_ms() >= deadline)
            r = cdn_err_set(err, ETIMEDOUT, "sandbox %s is still %s after %u s", id,
                            cli_state_name(st), timeout_s);
        if (!waiting || r < 0) {
            if (last)
                *last = sb;
            else
                protobuf_c_message_free_unpacked(m, NULL);
            return r;
        }
        protobuf_c_message_free_unpacked(m, NULL);
        usleep(polls < 50 ? 20000 : 100000); /* quick at first: a boot takes seconds */
    }
}

bool cli_remote_target(char *s, char **id, char **path) {
    char *colon = strchr(s, ':'), *slash = strchr(s, '/');
    if (!colon || colon == s || (slash && slash < colon))
        return false;
    *colon = '\0';
    *id = s;
    *path = colon + 1;
    return true;
}

char *cli_guest_path(const char *path) {
    if (path[0] == '/')
        return strdup(path);
    char *out = NULL;
    return asprintf(&out, "/workspace%s%s", *path ? "/" : "", path) < 0 ? NULL : out;
}
