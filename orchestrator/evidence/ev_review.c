/* SPDX-License-Identifier: Apache-2.0 */
/* After a task: its sealed evidence reopened to record what came later (a review's decision),
 * the audit trail continued from its last line and sealed again; and the summary a reviewer
 * reads before deciding, drawn from the manifest. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "ev_internal.h"
#include "fsutil.h"

int cdn_evidence_reopen(const char *task_dir, struct cdn_evidence **out, cdn_err **err) {
    _cleanup_(cdn_evidence_freep) struct cdn_evidence *ev = calloc(1, sizeof(*ev));
    if (!ev || asprintf(&ev->dir, "%s/evidence", task_dir) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    ev->art.fd = -1;
    ev->audit_fd = -1;
    char path[4400];
    snprintf(path, sizeof(path), "%s/manifest.json", ev->dir);
    json_error_t je;
    ev->root = json_load_file(path, 0, &je);
    if (!json_is_object(ev->root))
        return cdn_err_set(err, EIO, "%s:%d: %s", path, je.line, je.text);
    const char *keys[] = {"commands", "artifacts", "limits_hit"};
    json_t **arrays[] = {&ev->cmds, &ev->arts, &ev->limits};
    for (size_t i = 0; i < 3; i++) {
        json_t *a = json_object_get(ev->root, keys[i]);
        if (!json_is_array(a)) {
            a = json_array();
            json_object_set_new(ev->root, keys[i], a);
        }
        *arrays[i] = json_incref(a);
    }
    ev->ncmds = (unsigned)json_array_size(ev->cmds);
    /* The chain goes on from the trail's last line. */
    snprintf(path, sizeof(path), "%s/audit.jsonl", ev->dir);
    _cleanup_free_ char *trail = NULL;
    size_t len = 0;
    snprintf(ev->head, sizeof(ev->head), "%s", CDN_AUDIT_FIRST_PREV);
    int r = cdn_read_file(path, CDN_EVIDENCE_AUDIT_MAX, &trail, &len, err);
    if (r < 0 && r != -ENOENT)
        return r;
    for (size_t i = 0; r >= 0 && i < len;) {
        const char *nl = memchr(trail + i, '\n', len - i);
        size_t n = (size_t)((nl ? nl : trail + len) - (trail + i));
        if (n) {
            cdn_sha256_hex(trail + i, n, ev->head);
            ev->seq++;
        }
        i += n + 1;
    }
    *out = TAKE_PTR(ev);
    return 0;
}

/* Appends a's items that keep(item) to out. */
static void pick(json_t *out, const json_t *a, bool (*keep)(const json_t *)) {
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (keep(v)) json_array_append(out, v);
}

static bool cmd_failed(const json_t *c) {
    return json_integer_value(json_object_get(c, "exit_code")) != 0 ||
           json_object_get(c, "signal") || json_is_true(json_object_get(c, "timed_out")) ||
           !json_object_get(c, "exit_code");
}

static bool refused(const json_t *d) {
    const char *dec = json_string_value(json_object_get(d, "decision"));
    const char *st = json_string_value(json_object_get(json_object_get(d, "approval"), "status"));
    return (dec && strcmp(dec, "deny") == 0) || (st && strcmp(st, "approved") != 0);
}

static bool asked(const json_t *d) { return json_object_get(d, "approval") != NULL; }

/* One line per command: its argv and how it ended. */
static json_t *command_line(const json_t *c) {
    json_t *o = json_pack("{s:O}", "argv", json_object_get(c, "argv"));
    const char *keys[] = {"exit_code", "signal", "timed_out", "error"};
    for (size_t i = 0; i < 4; i++)
        if (json_object_get(c, keys[i]))
            json_object_set(o, keys[i], json_object_get(c, keys[i]));
    return o;
}

/* Egress per destination: counts by decision and bytes. */
static json_t *egress_summary(const json_t *attempts) {
    json_t *dests = json_object(), *out = json_object();
    size_t i, allowed = 0, denied = 0;
    json_t *a;
    json_array_foreach(attempts, i, a) {
        char key[400];
        const char *dec = json_string_value(json_object_get(a, "decision")) ?: "?";
        snprintf(key, sizeof(key), "%s:%lld %s",
                 json_string_value(json_object_get(a, "host")) ?: "?",
                 json_integer_value(json_object_get(a, "port")), dec);
        allowed += strcmp(dec, "allowed") == 0;
        denied += strcmp(dec, "denied") == 0;
        json_t *d = json_object_get(dests, key);
        if (!d) {
            d = json_pack("{s:O, s:O, s:s, s:O, s:i, s:I, s:I}", "host", json_object_get(a, "host"),
                          "port", json_object_get(a, "port"), "decision", dec, "rule",
                          json_object_get(a, "rule"), "count", 0, "bytes_up", (json_int_t)0,
                          "bytes_down", (json_int_t)0);
            json_object_set_new(dests, key, d);
        }
        json_object_set_new(d, "count",
                            json_integer(json_integer_value(json_object_get(d, "count")) + 1));
        const char *sums[] = {"bytes_up", "bytes_down"};
        for (size_t k = 0; k < 2; k++)
            json_object_set_new(d, sums[k],
                                json_integer(json_integer_value(json_object_get(d, sums[k])) +
                                             json_integer_value(json_object_get(a, sums[k]))));
    }
    json_t *list = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(dests, k, v) json_array_append(list, v);
    json_decref(dests);
    json_object_set_new(out, "allowed", json_integer((json_int_t)allowed));
    json_object_set_new(out, "denied", json_integer((json_int_t)denied));
    json_object_set_new(out, "destinations", list);
    return out;
}

json_t *cdn_evidence_review_summary(const json_t *m) {
    json_t *cmds = json_object_get(m, "commands"), *decisions = json_object_get(m, "decisions");
    json_t *lines = json_array(), *failed = json_array(), *refusals = json_array(),
           *approvals = json_array(), *failed_lines = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(cmds, i, v) json_array_append_new(lines, command_line(v));
    pick(failed, cmds, cmd_failed);
    json_array_foreach(failed, i, v) json_array_append_new(failed_lines, command_line(v));
    json_decref(failed);
    pick(refusals, decisions, refused);
    pick(approvals, decisions, asked);
    json_t *diff = json_object_get(m, "diff");
    json_t *deps = json_object_get(m, "dependencies");
    json_t *limits = json_object_get(m, "limits_hit");
    return json_pack("{s:O?, s:O?, s:O?, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "base",
                     json_object_get(m, "base"), "result", json_object_get(m, "result"), "diff",
                     diff, "commands", lines, "failed", failed_lines, "refused", refusals,
                     "approvals", approvals, "egress", egress_summary(json_object_get(m, "egress")),
                     "dependencies", deps ? json_incref(deps) : json_array(), "limits_hit",
                     limits ? json_incref(limits) : json_array());
}
