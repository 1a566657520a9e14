/* SPDX-License-Identifier: Apache-2.0 */
/* The commands of a task in the evidence: logs/<n>.stdout|stderr and one manifest entry each. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_internal.h"

struct cdn_evidence_cmd {
    unsigned n;
    json_t *entry;
    struct ev_stream out[2]; /* stdout, stderr */
    cdn_err *write_err;      /* the first failure to store output: reported at the end */
};

int cdn_evidence_cmd_begin(struct cdn_evidence *ev, const char *const *argv, size_t argc,
                           const char *cwd, struct cdn_evidence_cmd **out, cdn_err **err) {
    struct cdn_evidence_cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return cdn_err_set(err, ENOMEM, "out of memory");
    c->n = ++ev->ncmds;
    c->out[0].fd = c->out[1].fd = -1;
    char path[4400], now[32];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/logs/%u.%s", ev->dir, c->n, i ? "stderr" : "stdout");
        int r = ev_stream_open(&c->out[i], path, err);
        if (r < 0) {
            ev_stream_abort(&c->out[0]);
            free(c);
            return r;
        }
    }
    json_t *args = json_array();
    for (size_t i = 0; i < argc; i++)
        json_array_append_new(args, json_string(argv[i]));
    ev_now(now);
    c->entry = json_pack("{s:I, s:o, s:s?, s:s}", "n", (json_int_t)c->n, "argv", args, "cwd", cwd,
                         "started", now);
    if (!c->entry) {
        ev_stream_abort(&c->out[0]);
        ev_stream_abort(&c->out[1]);
        free(c);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    cdn_evidence_event(ev, "command.started", json_deep_copy(c->entry));
    *out = c;
    return 0;
}

int cdn_evidence_cmd_output(struct cdn_evidence_cmd *c, int fd, const uint8_t *data, size_t len) {
    if (fd != 1 && fd != 2)
        return 0;
    if (c->write_err)
        return 0; /* keep the command running; the failure is reported by cmd_end */
    ev_stream_write(&c->out[fd - 1], data, len, &c->write_err);
    return 0;
}

static json_t *stream_json(struct cdn_evidence_cmd *c, int i, cdn_err **err) {
    char hex[65];
    uint64_t bytes = c->out[i].bytes;
    char name[64];
    snprintf(name, sizeof(name), "logs/%u.%s", c->n, i ? "stderr" : "stdout");
    if (ev_stream_close(&c->out[i], hex, err) < 0)
        return NULL;
    return json_pack("{s:s, s:I, s:s}", "path", name, "bytes", (json_int_t)bytes, "sha256", hex);
}

int cdn_evidence_cmd_end(struct cdn_evidence *ev, struct cdn_evidence_cmd *c,
                         const struct cdn_evidence_exit *x, cdn_err **err) {
    char now[32];
    ev_now(now);
    json_object_set_new(c->entry, "ended", json_string(now));
    if (!x->failed) {
        if (x->signal)
            json_object_set_new(c->entry, "signal", json_integer(x->signal));
        else
            json_object_set_new(c->entry, "exit_code", json_integer(x->exit_code));
        json_object_set_new(c->entry, "timed_out", json_boolean(x->timed_out));
        json_object_set_new(c->entry, "truncated", json_boolean(x->truncated));
    }
    cdn_err *local = NULL;
    json_t *o = stream_json(c, 0, &local);
    json_t *e = stream_json(c, 1, local ? NULL : &local);
    if (o)
        json_object_set_new(c->entry, "stdout", o);
    if (e)
        json_object_set_new(c->entry, "stderr", e);
    cdn_err *first = c->write_err ? c->write_err : local;
    if (first != local)
        cdn_err_free(local);
    json_t *entry = c->entry;
    free(c);
    /* One line on the audit trail, not the whole manifest again: the reader merges them. */
    int r = ev_audit_append(ev, "command.exited", "commands", entry, err);
    if (first) {
        if (r == 0)
            r = cdn_err_set(err, cdn_err_code(first), "storing output: %s", cdn_err_msg(first));
        cdn_err_free(first);
    }
    return r;
}
