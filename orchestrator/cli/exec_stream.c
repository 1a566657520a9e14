/* SPDX-License-Identifier: Apache-2.0 */
/* The Exec stream's events, for the CLI's commands that run something. */
#include "exec_stream.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#define JSON_OUTPUT_LIMIT (16u << 20)

static void print_pending(const Cordon__V1__Approval *a) {
    fprintf(stderr, "cordon: approval needed (request %s):\n", a->id);
    for (size_t i = 0; i < a->n_parts; i++) {
        const Cordon__V1__ApprovalPart *p = a->parts[i];
        fprintf(stderr, "  %-8s", p->action);
        for (size_t j = 0; j < p->n_argv; j++)
            fprintf(stderr, " %s", p->argv[j]);
        fprintf(stderr, "\n           by %s%s%s\n", p->rule, *p->reason ? ": " : "", p->reason);
    }
}

static void write_all(int fd, const uint8_t *p, size_t n) {
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a closed terminal must not stop the stream */
        off += (size_t)w;
    }
}

static int on_event(void *ud, const ProtobufCMessage *msg) {
    struct cli_exec *x = ud;
    const Cordon__V1__ExecEvent *ev = (const Cordon__V1__ExecEvent *)msg;
    switch (ev->event_case) {
    case CORDON__V1__EXEC_EVENT__EVENT_OUTPUT: {
        const Cordon__V1__Output *o = ev->output;
        int fd = o->fd == 2 ? 2 : 1;
        if (!x->json)
            write_all(fd, o->data.data, o->data.len);
        else if (cdn_buf_len(&x->out[1]) + cdn_buf_len(&x->out[2]) + o->data.len >
                 JSON_OUTPUT_LIMIT)
            x->truncated_locally = true;
        else if (cdn_buf_append(&x->out[fd], o->data.data, o->data.len) < 0)
            return -ENOMEM;
        return 0;
    }
    case CORDON__V1__EXEC_EVENT__EVENT_APPROVAL_PENDING: {
        const Cordon__V1__Approval *a = ev->approval_pending->approval;
        if (!a)
            return 0;
        snprintf(x->approval, sizeof(x->approval), "%s", a->id);
        print_pending(a);
        if (x->on_pending)
            x->on_pending(x->ud, a);
        else
            fprintf(stderr,
                    "cordon: waiting; decide with `cordon approve %s` or `cordon deny %s`\n", a->id,
                    a->id);
        return 0;
    }
    case CORDON__V1__EXEC_EVENT__EVENT_NOTICE:
        if (!x->quiet)
            fprintf(stderr, "cordon: %s\n", ev->notice->message);
        return 0;
    case CORDON__V1__EXEC_EVENT__EVENT_EXIT:
        x->exit = *ev->exit;
        x->exited = true;
        return 0;
    case CORDON__V1__EXEC_EVENT__EVENT_DETACHED:
        snprintf(x->handle, sizeof(x->handle), "%.15s", ev->detached->handle);
        return 0;
    default: return 0;
    }
}

int cli_exec_stream(struct cdn_client *c, const Cordon__V1__ExecRequest *q, struct cli_exec *x,
                    const volatile sig_atomic_t *cancel, cdn_err **err) {
    int rc = cdn_client_stream(c, "Exec", &q->base, &cordon__v1__exec_event__descriptor, on_event,
                               x, cancel, 0, err);
    return (x->exited || x->handle[0]) && rc != -EINTR ? 0 : rc < 0 ? rc : -EPROTO;
}

int cli_exec_events(struct cdn_client *c, const char *method, const ProtobufCMessage *q,
                    struct cli_exec *x, const volatile sig_atomic_t *cancel, cdn_err **err) {
    return cdn_client_stream(c, method, q, &cordon__v1__exec_event__descriptor, on_event, x, cancel,
                             0, err);
}

int cli_exec_code(const struct cli_exec *x) {
    if (x->exit.timed_out)
        return CLI_EXIT_TIMEOUT;
    if (x->exit.signal)
        return 128 + x->exit.signal;
    return x->exit.exit_code;
}

json_t *cli_exec_json(struct cli_exec *x, int code) {
    bool lossy_out, lossy_err;
    json_t *o =
        json_pack("{s:i, s:i, s:b, s:b, s:I, s:I, s:I, s:I}", "exit_code", code, "signal",
                  x->exit.signal, "timed_out", x->exit.timed_out, "output_truncated",
                  x->exit.output_truncated || x->truncated_locally, "command_ms",
                  (json_int_t)x->exit.duration_ms, "user_ms", (json_int_t)x->exit.user_ms, "sys_ms",
                  (json_int_t)x->exit.sys_ms, "max_rss_kib", (json_int_t)x->exit.max_rss_kib);
    json_object_set_new(o, "stdout", cli_output_json(&x->out[1], &lossy_out));
    json_object_set_new(o, "stderr", cli_output_json(&x->out[2], &lossy_err));
    json_object_set_new(o, "output_not_utf8", json_boolean(lossy_out || lossy_err));
    if (*x->approval)
        json_object_set_new(o, "approval", json_string(x->approval));
    return o;
}

void cli_exec_free(struct cli_exec *x) {
    for (int i = 0; i < 3; i++)
        cdn_buf_free(&x->out[i]);
}

int cli_exec_option(const char *cmd, int c, char *arg, Cordon__V1__ExecRequest *q, char **env) {
    char *end;
    unsigned long v;
    switch (c) {
    case 'e':
        if (q->n_env == CLI_EXEC_MAX_ENV || !strchr(arg, '=') || arg[0] == '=') {
            fprintf(stderr, "cordon %s: --env takes KEY=VALUE (at most %d), not '%s'\n", cmd,
                    CLI_EXEC_MAX_ENV, arg);
            return -1;
        }
        env[q->n_env++] = arg;
        q->env = env;
        return 1;
    case 'w': q->cwd = arg; return 1;
    case 't':
        errno = 0;
        v = strtoul(arg, &end, 10);
        if (errno || *end || end == arg || !v || v > UINT_MAX / 1000) {
            fprintf(stderr,
                    "cordon %s: --timeout must be a number of seconds from 1 to %u, not "
                    "'%s'\n",
                    cmd, UINT_MAX / 1000, arg);
            return -1;
        }
        q->timeout_seconds = (uint32_t)v;
        return 1;
    default: return 0;
    }
}
