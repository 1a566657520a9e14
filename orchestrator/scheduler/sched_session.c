/* SPDX-License-Identifier: Apache-2.0 */
/* A session's jobs on its worker: pause (its result taken first, then the VM suspended, or saved
 * to disk), resume, reset to the base commit, extend; a session paused long enough saved to
 * disk; a paused one brought back for its teardown. Each is in the store (state PAUSED, where its
 * memory is) and on the audit trail with who asked. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "evidence.h"
#include "sched_internal.h"

static void answer(struct worker *w, struct job *j, int r, cdn_err *e) {
    struct cdn_job_result res = {0};
    snprintf(res.sandbox_id, sizeof(res.sandbox_id), "%s", w->b->id);
    j->ops->done(j->ud, r, e, &res);
    cdn_err_free(e);
    job_free(j);
}

static unsigned commands_running(const struct worker *w) {
    unsigned n = 0;
    for (const struct job *j = w->running; j; j = j->next)
        n++;
    return n;
}

/* Saved to disk: the store says so. */
static int save(struct worker *w, const char *by, cdn_err **e) {
    int r = cdn_session_save(w->sess, by, e);
    if (r < 0)
        return r;
    cdn_store_sandbox_set_paused(w->s->o.store, w->b->id, "disk", NULL);
    sched_set_state(w, CDN_SANDBOX_PAUSED, "paused: saved to disk");
    sched_save_evidence(w);
    sched_log(w->s, "sandbox %s: saved to disk (%s)", w->b->id, by);
    return 0;
}

static int pause_session(struct worker *w, const struct job *j, cdn_err **e) {
    const char *by = j->spec.path;
    bool to_disk = j->spec.to_disk;
    if (!w->booted)
        return cdn_err_set(e, EBADFD, "sandbox %s has no VM yet (it boots for its first command)",
                           w->b->id);
    if (w->paused && (!to_disk || cdn_session_saved(w->sess)))
        return cdn_err_set(e, EALREADY, "sandbox %s is paused already%s", w->b->id,
                           cdn_session_saved(w->sess) ? " (saved to disk)" : "");
    unsigned n = commands_running(w);
    if (to_disk && n)
        return cdn_err_set(e, EBADFD,
                           "%u command%s running in sandbox %s: saving it to disk would end "
                           "them; wait for them, or pause it in memory",
                           n, n == 1 ? " is" : "s are", w->b->id);
    if (!w->paused) {
        /* Its result first: the diff a reviewer sees is current as of the pause. */
        const struct cdn_task_result *info = cdn_session_info(w->sess);
        int r = 0;
        if (info->has_repo || w->b->spec.n_artifacts)
            r = cdn_session_take_result(w->sess, "the sandbox's commands before its pause", e);
        if (r >= 0 && info->has_repo)
            cdn_store_sandbox_update(w->s->o.store, w->b->id, NULL, info->result, NULL, NULL, NULL);
        if (r >= 0) {
            sched_preview_close_all(w, "the sandbox paused");
            r = cdn_session_pause(w->sess, by, e);
        }
        if (r < 0)
            return cdn_err_prefix(e, "pausing sandbox %s", w->b->id);
        w->paused = true;
        w->paused_ms = sched_now_ms();
        w->no_auto_save = false;
        cdn_store_sandbox_set_paused(w->s->o.store, w->b->id, "memory", NULL);
        sched_set_state(w, CDN_SANDBOX_PAUSED, "paused: in memory");
        sched_save_evidence(w);
    }
    if (to_disk) {
        int r = save(w, by, e);
        if (r < 0) /* still suspended in memory */
            return cdn_err_prefix(e, "saving sandbox %s to disk (it stays paused in memory)",
                                  w->b->id);
    }
    return 0;
}

static int resume_session(struct worker *w, const char *by, cdn_err **e) {
    if (!w->paused)
        return cdn_err_set(e, EALREADY, "sandbox %s is not paused", w->b->id);
    int r = cdn_session_resume(w->sess, by, e);
    if (r < 0) { /* its VM cannot come back: the session fails, its evidence kept */
        cdn_err_set(&w->fatal, EIO, "resuming: %s", cdn_err_msg(*e));
        return r;
    }
    w->paused = false;
    cdn_store_sandbox_set_paused(w->s->o.store, w->b->id, NULL, NULL);
    sched_set_state(w, CDN_SANDBOX_READY, "resumed");
    sched_save_evidence(w);
    return 0;
}

static int reset_session(struct worker *w, const char *by, cdn_err **e) {
    /* A paused guest answers nobody: its commands are ended without waiting. */
    sched_preview_close_all(w, "the sandbox was reset");
    sched_end_commands(w, "was reset", w->paused ? 0 : 2000);
    int r = cdn_session_reset(w->sess, by, e);
    w->paused = false;
    w->booted = false;
    cdn_store_sandbox_set_paused(w->s->o.store, w->b->id, NULL, NULL);
    if (r < 0) {
        cdn_err_set(&w->fatal, -r, "resetting: %s", cdn_err_msg(*e));
        return r;
    }
    const struct cdn_task_result *info = cdn_session_info(w->sess);
    if (info->has_repo)
        cdn_store_sandbox_update(w->s->o.store, w->b->id, NULL, info->result, NULL, NULL, NULL);
    sched_set_state(w, CDN_SANDBOX_BOOTING, "reset to its base commit");
    cdn_err *be = NULL;
    if ((r = sched_boot(w, NULL, &be)) < 0) {
        cdn_err_set(&w->fatal, -r, "booting after its reset: %s", cdn_err_msg(be));
        cdn_err_set(e, -r, "sandbox %s: booting after its reset: %s", w->b->id, cdn_err_msg(be));
        cdn_err_free(be);
        return r;
    }
    sched_set_state(w, CDN_SANDBOX_READY, NULL);
    sched_save_evidence(w);
    return 0;
}

static int extend_session(struct worker *w, const struct job *j, cdn_err **e) {
    struct cdn_sched *s = w->s;
    uint32_t ttl = j->spec.ttl_s;
    if (ttl > s->o.session_max_ttl_s)
        return cdn_err_set(e, EDQUOT,
                           "ttl_seconds %u is over the daemon's limit of %u for a session", ttl,
                           s->o.session_max_ttl_s);
    int64_t expires = sched_wall_ms() + (int64_t)ttl * 1000;
    /* The policy's wall clock bounds the session's whole life. */
    const struct cdn_policy_limits *pl = w->b->policy ? cdn_policy_limits(w->b->policy) : NULL;
    if (pl && pl->wall_seconds) {
        struct cdn_store_sandbox rec;
        if (cdn_store_sandbox_get(s->o.store, NULL, w->b->id, &rec, e) < 0)
            return -EIO;
        int64_t cap = rec.created_ms + (int64_t)pl->wall_seconds * 1000;
        cdn_store_sandbox_clear(&rec);
        if (expires > cap)
            return cdn_err_set(e, EDQUOT,
                               "the policy's limits.wall_seconds (%u) ends sandbox %s %lld s from "
                               "now: it cannot be extended past that",
                               pl->wall_seconds, w->b->id,
                               (long long)((cap - sched_wall_ms()) / 1000));
    }
    int r = cdn_store_sandbox_set_expiry(s->o.store, w->b->id, expires, e);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->mu);
    w->b->expires_ms = expires;
    pthread_mutex_unlock(&s->mu);
    cdn_evidence_event(cdn_session_evidence(w->sess), "session.extended",
                       json_pack("{s:s, s:i, s:I}", "by", j->spec.path, "ttl_seconds", (int)ttl,
                                 "expires_unix_ms", (json_int_t)expires));
    sched_save_evidence(w);
    return 0;
}

void sched_session_job(struct worker *w, struct job *j) {
    cdn_err *e = NULL;
    int r;
    switch (j->spec.kind) {
    case CDN_JOB_PAUSE: r = pause_session(w, j, &e); break;
    case CDN_JOB_RESUME: r = resume_session(w, j->spec.path, &e); break;
    case CDN_JOB_RESET: r = reset_session(w, j->spec.path, &e); break;
    case CDN_JOB_EXTEND: r = extend_session(w, j, &e); break;
    default: r = cdn_err_set(&e, EINVAL, "not a session's job");
    }
    answer(w, j, r, e);
}

void sched_session_tick(struct worker *w) {
    if (!w->paused || w->no_auto_save || cdn_session_saved(w->sess) || w->running ||
        sched_now_ms() - w->paused_ms < (int64_t)w->s->o.pause_to_disk_s * 1000)
        return;
    char by[96];
    snprintf(by, sizeof(by), "cordond (paused for %u s)", w->s->o.pause_to_disk_s);
    cdn_err *e = NULL;
    if (save(w, by, &e) < 0) {
        w->no_auto_save = true;
        sched_log(w->s, "sandbox %s: saving it to disk failed, it stays paused in memory: %s",
                  w->b->id, cdn_err_msg(e));
    }
    cdn_err_free(e);
}

bool sched_session_unpause(struct worker *w) {
    if (!w->paused)
        return true;
    if (cdn_session_saved(w->sess))
        return false;
    cdn_err *e = NULL;
    int r = cdn_session_resume(w->sess, "cordond (to stop it)", &e);
    if (r < 0)
        sched_log(w->s, "sandbox %s: resuming it to stop it: %s", w->b->id, cdn_err_msg(e));
    cdn_err_free(e);
    w->paused = r < 0;
    return r >= 0;
}
