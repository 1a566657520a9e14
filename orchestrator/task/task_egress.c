/* SPDX-License-Identifier: Apache-2.0 */
/* A session's network: the policy's egress rules behind the channel's egress hooks. Each attempt
 * leaves two marks in the evidence: its verdict on the audit trail when the guest learns it
 * (egress.decided), and its whole record (bytes each way, duration) in the manifest's "egress"
 * list when it ends. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "clock.h"
#include "egress.h"
#include "task_internal.h"

static int hook_open(void *ud, const char *host, uint16_t port, bool tunnel, void **token,
                     char *why, size_t why_size) {
    struct cdn_session *s = ud;
    struct cdn_egress_attempt *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(why, why_size, "egress: out of memory");
        *token = NULL;
        return -ENOMEM;
    }
    int fd = cdn_egress_open(s->egress, host, port, tunnel, a);
    snprintf(why, why_size, "%s", a->why);
    *token = a;
    return fd;
}

static void hook_decided(void *ud, void *token) {
    struct cdn_session *s = ud;
    const struct cdn_egress_attempt *a = token;
    if (!a)
        return;
    const char *decision = !a->allowed ? "denied" : a->error ? "failed" : "allowed";
    cdn_evidence_event(s->ev, "egress.decided",
                       json_pack("{s:s, s:i, s:s, s:s, s:s, s:s?, s:s?}", "host", a->host, "port",
                                 (int)a->port, "kind", a->tunnel ? "connect" : "http", "decision",
                                 decision, "rule", a->rule, "purpose",
                                 a->purpose[0] ? a->purpose : NULL, "address",
                                 a->address[0] ? a->address : NULL));
    if (!a->allowed || a->error)
        task_notice(s->spec, "%s", a->why);
}

static void hook_ended(void *ud, void *token, uint64_t up, uint64_t down) {
    struct cdn_session *s = ud;
    struct cdn_egress_attempt *a = token;
    if (!a)
        return;
    cdn_evidence_append(s->ev, "egress",
                        cdn_egress_attempt_json(a, up, down, cdn_now_ms() - a->t0_ms));
    free(a);
}

int task_egress_attach(struct cdn_session *s, cdn_err **err) {
    static const struct cdn_egress_rules none = {0}; /* no policy: nothing leaves */
    const struct cdn_egress_rules *rules =
        s->spec->policy ? cdn_policy_egress(s->spec->policy) : &none;
    if (!s->egress) {
        int r = cdn_egress_new(rules, &s->egress, err);
        if (r < 0)
            return r;
    }
    struct cdn_channel_egress hooks = {
        .open = hook_open, .decided = hook_decided, .ended = hook_ended, .ud = s};
    cdn_channel_set_egress(s->ch, &hooks);
    return 0;
}

int cdn_session_set_egress(struct cdn_session *s, const struct cdn_egress_rules *rules,
                           const char *by, const char *policy_sha256, cdn_err **err) {
    if (!s->egress) {
        int r = cdn_egress_new(rules, &s->egress, err);
        if (r < 0)
            return r;
    } else {
        int r = cdn_egress_set_rules(s->egress, rules, err);
        if (r < 0)
            return r;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < rules->n; i++) {
        const struct cdn_egress_rule *r = &rules->v[i];
        json_t *ports = json_array();
        for (size_t k = 0; k < r->nports; k++)
            json_array_append_new(ports, json_integer(r->ports[k]));
        json_array_append_new(list, json_pack("{s:s, s:o, s:s?, s:s, s:b, s:s?}", "host", r->host,
                                              "ports", ports, "purpose", r->purpose, "action",
                                              r->allow ? "allow" : "deny", "private", r->private_ok,
                                              "reason", r->reason));
    }
    cdn_evidence_append(s->ev, "policy_updates",
                        json_pack("{s:s, s:s?, s:s, s:o}", "by", by ? by : "", "policy_sha256",
                                  policy_sha256, "egress_default",
                                  rules->default_allow ? "allow" : "deny", "egress_rules", list));
    return 0;
}
