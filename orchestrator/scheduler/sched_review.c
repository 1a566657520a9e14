/* SPDX-License-Identifier: Apache-2.0 */
/* The review gate: a sandbox whose result changed the repository ends AWAITING_REVIEW (unless its
 * policy says review.required: false); a person approves or rejects it. An approval first does
 * what the policy's review section says (nothing, a push of the task branch, or a merge into a
 * branch of the sandbox's repository) and is recorded only if that worked; a rejection leaves
 * every branch as it was. Either way the decision, with the reviewer's identity and comment, goes
 * to the sandbox's audit trail (its evidence reopened and sealed again) and to the store. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "evidence.h"
#include "sched_internal.h"

bool sched_review_gates(const struct worker *w) {
    const struct cdn_task_result *info = cdn_session_info(w->sess);
    return !w->s->o.no_review_gate && w->b->policy && cdn_policy_review(w->b->policy)->required &&
           info->has_repo && info->diff.files > 0;
}

void sched_review_await(struct worker *w) {
    const struct cdn_task_result *info = cdn_session_info(w->sess);
    const struct cdn_policy_review *rv = cdn_policy_review(w->b->policy);
    static const char *const merges[] = {"none", "branch", "push"};
    cdn_evidence_fact(cdn_session_evidence(w->sess), "review", "awaiting");
    cdn_evidence_event(cdn_session_evidence(w->sess), "review.awaiting",
                       json_pack("{s:s, s:i, s:i, s:i, s:s}", "result", info->result,
                                 "files_changed", (int)info->diff.files, "insertions",
                                 (int)info->diff.insertions, "deletions", (int)info->diff.deletions,
                                 "merge", merges[rv->merge]));
    cdn_store_sandbox_set_review(w->s->o.store, w->b->id, "awaiting", NULL, NULL, NULL, NULL);
}

/* Whether by may decide: the policy's approvers, else the sandbox's own tenant. */
static bool may_review(const struct cdn_policy_review *rv, const char *tenant, const char *by) {
    if (!rv->n_approvers)
        return strcmp(tenant, by) == 0;
    for (size_t i = 0; i < rv->n_approvers; i++)
        if (strcmp(rv->approvers[i], by) == 0)
            return true;
    return false;
}

/* The token the policy's review.credentials names (NULL: none asked for). */
static int token_of(const struct cdn_policy *p, char **token, cdn_err **err) {
    const char *name = cdn_policy_review(p)->credentials;
    *token = NULL;
    if (!name)
        return 0;
    for (size_t i = 0; i < cdn_policy_secret_count(p); i++) {
        const struct cdn_policy_secret *sec = cdn_policy_secret(p, i);
        size_t len;
        if (strcmp(sec->name, name) == 0)
            return cdn_task_secret_read(sec, token, &len, err);
    }
    return cdn_err_set(err, EINVAL, "review.credentials names no secret '%s'", name);
}

/* The approved result where the policy sends it; *where says so ("" for merge: none). */
static int publish(struct cdn_sched *s, const struct cdn_store_sandbox *rec,
                   const struct cdn_policy *p, char *where, size_t n, cdn_err **err) {
    const struct cdn_policy_review *rv = cdn_policy_review(p);
    *where = '\0';
    if (rv->merge == CDN_REVIEW_NONE)
        return 0;
    char worktree[4300], task_branch[64];
    snprintf(worktree, sizeof(worktree), "%s/tasks/%s/workspace", s->state_dir, rec->id);
    snprintf(task_branch, sizeof(task_branch), "cordon/%s", rec->id);
    struct cdn_workspace_publish q = {.worktree = worktree,
                                      .task_branch = task_branch,
                                      .remote = rv->remote ? rv->remote : rec->repo,
                                      .target = rv->branch ? rv->branch : task_branch,
                                      .merge = rv->merge == CDN_REVIEW_BRANCH};
    if (q.merge && !rv->branch) {
        if (!rec->ref || !*rec->ref)
            return cdn_err_set(err, EINVAL,
                               "review.merge: branch, but the policy names no review.branch and "
                               "the sandbox started from its repository's HEAD, not a branch");
        q.target = rec->ref;
    }
    char *token = NULL;
    int r = token_of(p, &token, err);
    q.token = token;
    char sha[41] = "";
    if (r >= 0)
        r = cdn_workspace_publish(&q, sha, err);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    if (r >= 0)
        snprintf(where, n, "%s %s as %s at %s", q.merge ? "merged into" : "pushed to", q.remote,
                 q.target, sha);
    return r;
}

/* An event (fields taken) on the sandbox's audit trail, its review fact set (NULL: as it was),
 * sealed again with the host's key. */
static int record(struct cdn_sched *s, const char *id, const char *event, const char *fact,
                  json_t *fields, cdn_err **err) {
    char dir[4300], keys[4300];
    snprintf(dir, sizeof(dir), "%s/tasks/%s", s->state_dir, id);
    snprintf(keys, sizeof(keys), "%s/keys", s->state_dir);
    _cleanup_(cdn_evidence_freep) struct cdn_evidence *ev = NULL;
    int r = cdn_evidence_reopen(dir, &ev, err);
    if (r < 0) {
        json_decref(fields);
        return r;
    }
    if (fact)
        cdn_evidence_fact(ev, "review", fact);
    cdn_evidence_event(ev, event, fields);
    return cdn_evidence_seal(ev, keys, err);
}

int cdn_sched_review_get(struct cdn_sched *s, const char *by, const char *id,
                         struct cdn_store_sandbox *rec, struct cdn_policy **p, cdn_err **err) {
    *p = NULL;
    int r = cdn_store_sandbox_get(s->o.store, NULL, id, rec, err);
    if (r >= 0 && rec->policy)
        r = cdn_policy_parse("policy", rec->policy, strlen(rec->policy), p, err);
    const struct cdn_policy_review *rv = *p ? cdn_policy_review(*p) : NULL;
    if (r >= 0 && strcmp(rec->tenant, by) != 0 &&
        !(rv && rv->n_approvers && may_review(rv, rec->tenant, by)))
        r = cdn_err_set(err, ENOENT, "no sandbox %s", id); /* another tenant's: not there */
    if (r < 0) {
        cdn_policy_free(TAKE_PTR(*p));
        cdn_store_sandbox_clear(rec);
    }
    return r;
}

int cdn_sched_review(struct cdn_sched *s, const char *by, const char *id, bool approve,
                     const char *comment, cdn_err **err) {
    if (comment && strlen(comment) > 4096)
        return cdn_err_set(err, EINVAL, "the comment is over 4096 bytes");
    pthread_mutex_lock(&s->review_mu); /* one decision at a time: the first one stands */
    struct cdn_store_sandbox rec = {0};
    struct cdn_policy *p = NULL;
    int r = cdn_sched_review_get(s, by, id, &rec, &p, err);
    const struct cdn_policy_review *rv = p ? cdn_policy_review(p) : NULL;
    if (r >= 0 && !(rv && may_review(rv, rec.tenant, by)))
        r = cdn_err_set(err, EPERM, "the policy's review.approvers does not name %s", by);
    else if (r >= 0 && rec.state != CDN_SANDBOX_AWAITING_REVIEW)
        r = rec.review && strcmp(rec.review, "awaiting") != 0
                ? cdn_err_set(err, EALREADY, "sandbox %s was %s already by %s", id, rec.review,
                              rec.reviewed_by ? rec.reviewed_by : "someone")
                : cdn_err_set(err, EBADFD, "sandbox %s is %s, not awaiting review", id,
                              cdn_sandbox_state_name(rec.state));
    char where[1200] = "";
    if (r >= 0 && approve && (r = publish(s, &rec, p, where, sizeof(where), err)) < 0) {
        /* Nothing decided: it still awaits a review; the attempt is on the trail. */
        cdn_err *re = NULL;
        record(s, id, "review.approval_failed", NULL,
               json_pack("{s:s, s:s}", "by", by, "error", cdn_err_msg(*err)), &re);
        cdn_err_free(re);
        cdn_err_prefix(err, "sandbox %s stays awaiting review", id);
    }
    if (r >= 0 && (r = record(s, id, approve ? "review.approved" : "review.rejected",
                              approve ? "approved" : "rejected",
                              json_pack("{s:s, s:s?, s:s?}", "by", by, "comment",
                                        comment && *comment ? comment : NULL, "published",
                                        *where ? where : NULL),
                              err)) >= 0) {
        cdn_store_sandbox_set_review(s->o.store, id, approve ? "approved" : "rejected", by,
                                     comment && *comment ? comment : NULL, *where ? where : NULL,
                                     NULL);
        char msg[1400];
        snprintf(msg, sizeof(msg), "%s by %s%s%s", approve ? "approved" : "rejected", by,
                 *where ? ": " : "", where);
        r = cdn_store_sandbox_set_state(s->o.store, rec.tenant, id, CDN_SANDBOX_STOPPED, msg, err);
        sched_log(s, "sandbox %s: %s", id, msg);
    }
    cdn_policy_free(p);
    cdn_store_sandbox_clear(&rec);
    pthread_mutex_unlock(&s->review_mu);
    return r;
}
