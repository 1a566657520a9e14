/* SPDX-License-Identifier: Apache-2.0 */
/* The policy before the VM: the command decided (deny refuses, approve waits for a person), and
 * the policy's limits folded into the task's options. Every decision lands in the evidence. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.pb-c.h"
#include "evidence.h"
#include "task_internal.h"

/* The first part with the decisive action, for the message. */
static const struct cdn_policy_part *decisive(const struct cdn_policy_decision *d) {
    for (size_t i = 0; i < d->n; i++)
        if (d->parts[i].action == d->action)
            return &d->parts[i];
    return NULL;
}

static void describe(const struct cdn_policy_part *p, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; p && i < p->argc && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? " " : "", p->argv[i]);
}

struct cdn_gate_pending {
    json_t *rec; /* the decision's record, completed by how the approval ended */
    char what[512];
    char rule[256], reason[512];
};

int cdn_gate_check(const struct cdn_policy *p, struct cdn_evidence *ev, const char *const *argv,
                   size_t argc, char id[17], struct cdn_gate_pending **pending, cdn_err **err) {
    *pending = NULL;
    if (!p)
        return 0;
    struct cdn_policy_decision d;
    int r = cdn_policy_decide(p, argv, argc, &d, err);
    if (r < 0)
        return r;
    json_t *jargv = json_array();
    for (size_t i = 0; i < argc; i++)
        json_array_append_new(jargv, json_string(argv[i]));
    json_t *rec =
        json_pack("{s:o, s:s, s:s, s:o}", "argv", jargv, "policy", cdn_policy_name(p), "decision",
                  cdn_policy_action_name(d.action), "parts", cdn_approval_parts_json(&d));
    const struct cdn_policy_part *why = decisive(&d);
    char what[512];
    describe(why, what, sizeof(what));
    if (d.action == CDN_POLICY_APPROVE) {
        struct cdn_gate_pending *g = calloc(1, sizeof(*g));
        if (!g)
            r = cdn_err_set(err, ENOMEM, "out of memory");
        else
            r = cdn_approval_new_id(id, err);
        if (r == 0) {
            g->rec = rec;
            snprintf(g->what, sizeof(g->what), "%s", what);
            snprintf(g->rule, sizeof(g->rule), "%s", why ? why->rule : "");
            snprintf(g->reason, sizeof(g->reason), "%s",
                     why && why->reason ? why->reason : "approval required");
            *pending = g;
            cdn_policy_decision_free(&d);
            return 1;
        }
        free(g);
    } else if (d.action == CDN_POLICY_DENY) {
        r = cdn_err_set(err, EPERM, "refused by the policy: `%s` (%s%s%s)", what,
                        why ? why->rule : "", why && why->reason ? ": " : "",
                        why && why->reason ? why->reason : "");
    }
    cdn_evidence_append(ev, "decisions", rec);
    cdn_policy_decision_free(&d);
    return r;
}

const json_t *cdn_gate_pending_request(const struct cdn_gate_pending *g) { return g->rec; }

int cdn_gate_settle(struct cdn_gate_pending *g, struct cdn_evidence *ev, const char *id,
                    enum cdn_approval_status st, const char *by, cdn_err **err) {
    char at[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(g->rec, "approval",
                        json_pack("{s:s, s:s, s:s, s:s}", "id", id, "status",
                                  cdn_approval_status_name(st), "by", by, "at", at));
    int r = 0;
    if (st != CDN_APPROVAL_APPROVED)
        r = cdn_err_set(err, EPERM, "`%s` was not approved (%s by %s; %s: %s)", g->what,
                        cdn_approval_status_name(st), by, g->rule, g->reason);
    cdn_evidence_append(ev, "decisions", g->rec);
    free(g);
    return r;
}

/* value: the option as given (0: unset); cap: the policy's (0: none). */
static int bounded(unsigned *value, unsigned cap, const char *what, cdn_err **err) {
    if (!cap)
        return 0;
    if (*value > cap)
        return cdn_err_set(err, EPERM, "%s %u is over the policy's limit of %u", what, *value, cap);
    if (!*value)
        *value = cap;
    return 0;
}

static void cap64(uint64_t *value, uint64_t cap) {
    if (cap && (!*value || *value > cap))
        *value = cap;
}

int cdn_task_apply_limits(struct cdn_task_spec *s, struct cdn_rlimit *nproc, cdn_err **err) {
    if (!s->policy)
        return 0;
    const struct cdn_policy_limits *l = cdn_policy_limits(s->policy);
    unsigned timeout_s = s->timeout_ms / 1000;
    int r;
    if ((r = bounded(&s->vcpus, l->cpus, "cpus", err)) < 0 ||
        (r = bounded(&s->memory_mib, l->memory_mib, "memory_mib", err)) < 0 ||
        (r = bounded(&timeout_s, l->command_timeout_seconds, "command_timeout_seconds", err)) < 0)
        return r;
    if (l->wall_seconds && (!timeout_s || timeout_s > l->wall_seconds))
        timeout_s = l->wall_seconds; /* the command cannot outlive the task */
    if (l->wall_seconds &&
        (!s->boot_timeout_ms || (unsigned)s->boot_timeout_ms / 1000 > l->wall_seconds))
        s->boot_timeout_ms = (int)l->wall_seconds * 1000;
    s->timeout_ms = timeout_s * 1000u;
    cap64(&s->output_limit, l->output_bytes);
    cap64(&s->disk_max_bytes, (uint64_t)l->disk_mib << 20);
    cap64(&s->result_limits.max_entries, l->max_files_returned);
    cap64(&s->result_limits.max_total_bytes, l->max_bytes_returned);
    if (l->max_processes) {
        *nproc = (struct cdn_rlimit){.resource = CORDON_AGENT__RLIMIT__RLIMIT_PROCESSES,
                                     .soft = l->max_processes,
                                     .hard = l->max_processes};
        s->rlimits = nproc;
        s->n_rlimits = 1;
    }
    return 0;
}
