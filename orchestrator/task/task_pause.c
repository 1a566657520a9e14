/* SPDX-License-Identifier: Apache-2.0 */
/* A session's pauses and resets: its VM suspended where it is, or saved to disk (its memory in
 * tasks/<id>/memory.save, the domain gone, the host's memory given back) and restored; on resume
 * the guest's clock is set from the host's and its entropy reseeded. A reset discards the VM and
 * the work: /workspace back to the base commit on a fresh disk (the caller boots it again). Each
 * step is on the audit trail, with who asked. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "task_internal.h"

#define RESUME_TIMEOUT_MS 60000

bool cdn_session_paused(const struct cdn_session *s) { return s->paused; }
bool cdn_session_saved(const struct cdn_session *s) { return s->saved != NULL; }

int cdn_session_pause(struct cdn_session *s, const char *by, cdn_err **err) {
    if (s->paused)
        return cdn_err_set(err, EALREADY, "sandbox %s is paused already", s->res.id);
    if (!s->vm || !s->ch)
        return cdn_err_set(err, EBADFD, "sandbox %s has no running VM to pause", s->res.id);
    int r = cdn_vm_suspend(s->vm, err);
    if (r < 0)
        return r;
    s->paused = true;
    s->paused_at_ms = cdn_now_ms();
    cdn_evidence_event(
        s->ev, "session.paused",
        json_pack("{s:s, s:s, s:s}", "by", by, "where", "memory", "result", s->res.result));
    return 0;
}

/* Bytes of a file (0 when unreadable). */
static long long file_bytes(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

int cdn_session_save(struct cdn_session *s, const char *by, cdn_err **err) {
    if (s->saved)
        return cdn_err_set(err, EALREADY, "sandbox %s is saved to disk already", s->res.id);
    if (!s->vm || !s->ch)
        return cdn_err_set(err, EBADFD, "sandbox %s has no running VM to save", s->res.id);
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/memory.save", s->dir) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    uint64_t t0 = cdn_now_ms();
    /* Saved as it is (suspended or running); the domain ends with the save. */
    int r = cdn_vm_save(s->vm, path, err);
    if (r < 0) {
        unlink(path);
        return r;
    }
    /* The channel's other end went with the QEMU: a restore brings a new one. */
    cdn_channel_freep(&s->ch);
    if (!s->paused)
        s->paused_at_ms = t0;
    s->paused = true;
    s->saved = TAKE_PTR(path);
    cdn_evidence_event(s->ev, "session.paused",
                       json_pack("{s:s, s:s, s:I, s:I, s:s}", "by", by, "where", "disk", "bytes",
                                 (json_int_t)file_bytes(s->saved), "save_ms",
                                 (json_int_t)(cdn_now_ms() - t0), "result", s->res.result));
    return 0;
}

/* The restored guest's channel: a new connection (the agent starts a new session: the commands
 * of the old one were none, the caller saw to that), the policy's egress behind it again. */
static int reconnect(struct cdn_session *s, cdn_err **err) {
    int fd = cdn_vm_agent_fd(s->vm, RESUME_TIMEOUT_MS, err);
    if (fd < 0)
        return fd;
    struct cdn_channel_opts o = {.name = cdn_vm_name(s->vm),
                                 .handshake_timeout_ms = RESUME_TIMEOUT_MS,
                                 .cancel = s->spec->cancel};
    int r = cdn_channel_open(fd, &o, &s->ch, err);
    return r < 0 ? r : task_egress_attach(s, err);
}

int cdn_session_resume(struct cdn_session *s, const char *by, cdn_err **err) {
    if (!s->paused)
        return cdn_err_set(err, EALREADY, "sandbox %s is not paused", s->res.id);
    uint64_t t0 = cdn_now_ms();
    const char *from = s->saved ? "disk" : "memory";
    int r;
    if (s->saved) {
        r = cdn_vm_restore(s->vm, s->saved, err);
        if (r >= 0)
            r = reconnect(s, err); /* its Hello sets the clock */
        if (r < 0)
            return cdn_err_prefix(err, "restoring sandbox %s from disk", s->res.id);
        unlink(s->saved);
        free(TAKE_PTR(s->saved));
    } else {
        if ((r = cdn_vm_resume(s->vm, err)) < 0)
            return r;
        /* The clock stood still while it was paused: the host's, told again. */
        if ((r = cdn_channel_reseed(s->ch, RESUME_TIMEOUT_MS, err)) < 0)
            return cdn_err_prefix(err, "setting the clock of sandbox %s after its pause",
                                  s->res.id);
    }
    s->paused = false;
    cdn_evidence_event(s->ev, "session.resumed",
                       json_pack("{s:s, s:s, s:I, s:I}", "by", by, "from", from, "paused_ms",
                                 (json_int_t)(t0 - s->paused_at_ms), "resume_ms",
                                 (json_int_t)(cdn_now_ms() - t0)));
    return 0;
}

int cdn_session_reset(struct cdn_session *s, const char *by, cdn_err **err) {
    char discarded[41];
    snprintf(discarded, sizeof(discarded), "%s", s->res.result);
    task_vm_release(s); /* the VM, its channel, its disk (a saved memory too) */
    s->paused = false;
    int r = 0;
    if (s->ws) {
        if ((r = cdn_workspace_reset(s->ws, err)) < 0)
            return r;
        snprintf(s->res.result, sizeof(s->res.result), "%s", s->res.base);
        s->res.changed = false;
        s->res.diff = (struct cdn_diff_stats){0};
        if ((r = cdn_evidence_diff(s->ev, &s->res.diff, "", 0, err)) < 0)
            return r;
        cdn_evidence_fact(s->ev, "result", s->res.base);
    }
    cdn_evidence_event(s->ev, "session.reset",
                       json_pack("{s:s, s:s?, s:s?}", "by", by, "base", s->ws ? s->res.base : NULL,
                                 "discarded_result", s->ws ? discarded : NULL));
    return 0;
}
