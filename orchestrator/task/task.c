/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task: one task end to end, as a session that lives for one command. Before any VM boots:
 * the task folder, the evidence, the workspace, and the policy's decision on the command (a
 * refusal or a denied approval boots nothing). Then the VM, the command, the result taken, and a
 * close that saves the evidence on every path (evidence gathered up to a failure is kept). */
#include "task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "clock.h"
#include "task_internal.h"

#define POLL_SLICE_MS 100

void task_notice(const struct cdn_task_spec *spec, const char *fmt, ...) {
    if (!spec->on_notice)
        return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    spec->on_notice(spec->ud, line);
}

bool task_cancelled(const struct cdn_task_spec *spec) { return spec->cancel && *spec->cancel; }

/* The policy's decision, and the person's when it asks for one (failing closed without one). */
static int gate(struct cdn_session *s, cdn_err **err) {
    const struct cdn_task_spec *spec = s->spec;
    char id[17];
    struct cdn_gate_pending *pending;
    int r = cdn_gate_check(spec->policy, s->ev, spec->state_dir, s->res.id, spec->argv, spec->argc,
                           id, &pending, err);
    if (r <= 0)
        return r;
    char by[256] = "nobody";
    enum cdn_approval_status st = CDN_APPROVAL_EXPIRED;
    if (spec->on_approval) {
        /* The callback gets the decision again, for showing it to the person. */
        struct cdn_policy_decision d;
        if ((r = cdn_policy_decide(spec->policy, spec->argv, spec->argc, &d, err)) < 0) {
            cdn_gate_settle(pending, s->ev, id, CDN_APPROVAL_EXPIRED, "nobody", NULL);
            return r;
        }
        st = spec->on_approval(spec->ud, id, &d, by, sizeof(by));
        cdn_policy_decision_free(&d);
    } else { /* nobody to ask: fail closed, and say so in the store */
        snprintf(by, sizeof(by), "nobody (no approver for this run)");
        cdn_approval_decide(spec->state_dir, id, CDN_APPROVAL_EXPIRED, by, NULL);
    }
    return cdn_gate_settle(pending, s->ev, id, st, by, err);
}

/* Waits for the command, in slices, so a cancellation is seen within POLL_SLICE_MS. */
static int run_command(struct cdn_session *s, cdn_err **err) {
    const struct cdn_task_spec *spec = s->spec;
    struct cdn_exec_spec x = {.argv = spec->argv,
                              .argc = spec->argc,
                              .env = spec->env,
                              .envc = spec->envc,
                              .cwd = s->cwd,
                              .timeout_ms = spec->timeout_ms,
                              .output_limit = spec->output_limit,
                              .rlimits = spec->rlimits,
                              .n_rlimits = spec->n_rlimits};
    struct cdn_session_cmd *c;
    int r = cdn_session_cmd_start(s, &x, spec->on_output, spec->ud, &c, err);
    if (r < 0)
        return r;
    while (r >= 0 && !cdn_session_cmd_done(s, c)) {
        if (task_cancelled(spec))
            r = cdn_err_set(err, EINTR, "cancelled");
        else
            r = cdn_session_poll(s, -1, POLL_SLICE_MS, err);
    }
    cdn_err *fin_err = NULL;
    int fr = cdn_session_cmd_finish(s, c, r >= 0 ? 1000 : 0, &s->res.exec, r >= 0 ? err : &fin_err);
    cdn_err_free(fin_err);
    return r < 0 ? r : fr;
}

static void what_ran(const struct cdn_task_spec *spec, char *cmd, size_t size) {
    size_t used = 0;
    cmd[0] = '\0';
    for (size_t i = 0; i < spec->argc && used + 1 < size; i++) {
        int n = snprintf(cmd + used, size - used, "%s%s", i ? " " : "", spec->argv[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

int cdn_task_run(const struct cdn_task_spec *given, struct cdn_task_result *res, cdn_err **err) {
    *res = (struct cdn_task_result){0};
    /* The options as the policy bounds them: what the rest of the task uses. */
    struct cdn_task_spec eff = *given;
    struct cdn_rlimit nproc;
    int r = cdn_task_apply_limits(&eff, &nproc, err);
    if (r < 0)
        return r;
    struct cdn_session *s;
    if ((r = cdn_session_open(&eff, NULL, &s, err)) < 0)
        return r;
    r = gate(s, err);
    if (r >= 0)
        r = cdn_session_boot(s, err);
    if (r >= 0)
        r = run_command(s, err);
    if (r >= 0 && task_cancelled(&eff))
        r = cdn_err_set(err, EINTR, "cancelled");
    if (r >= 0) {
        char cmd[1024];
        what_ran(&eff, cmd, sizeof(cmd));
        r = cdn_session_take_result(s, cmd, err);
    }
    s->res.total_ms = cdn_now_ms() - s->t0;
    cdn_session_close(s, r < 0 ? cdn_err_msg(*err) : NULL, res);
    return r;
}

void cdn_task_result_free(struct cdn_task_result *res) {
    free(res->console);
    free(res->evidence);
    res->console = res->evidence = NULL;
}
