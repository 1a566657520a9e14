/* SPDX-License-Identifier: Apache-2.0 */
/* A session's VM: the boot (overlay, libvirt connection, leftovers swept, accelerator and
 * transport chosen, the domain started, the agent's hello, the workspace uploaded), its commands,
 * the transfers out, and the release of all of it in the reverse order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "task_gc.h"
#include "task_internal.h"
#include "task_transfer.h"
#include "redact.h"
#include "vm.h"

#define TRANSFER_TIMEOUT_MS (10 * 60 * 1000)
#define DEFAULT_ARTIFACT_BYTES (64ull << 20)
#define DEFAULT_ARTIFACTS_TOTAL (256ull << 20)

/* A command: its output goes, redacted, to the evidence and to the caller. */
struct cdn_session_cmd {
    struct cdn_evidence_cmd *ev;
    cdn_output_fn fn;
    void *ud;
    uint64_t stream;
    const struct cdn_redactor *redactor;
    struct cdn_redact_stream rs[2];
    int fd;        /* the one being fed (for the sink) */
    bool detached; /* its output is not the evidence's to log */
};

static int tee_clean(void *ud, const uint8_t *data, size_t len) {
    struct cdn_session_cmd *c = ud;
    if (!c->detached)
        cdn_evidence_cmd_output(c->ev, c->fd, data, len);
    return c->fn ? c->fn(c->ud, c->fd, data, len) : 0;
}

static int tee_output(void *ud, int fd, const uint8_t *data, size_t len) {
    struct cdn_session_cmd *c = ud;
    if (fd != 1 && fd != 2)
        return 0;
    c->fd = fd;
    return cdn_redact_feed(c->redactor, &c->rs[fd - 1], data, len, false, tee_clean, c);
}

/* The bytes each stream held back (a possible start of a secret) go out at the end. */
static void tee_flush(struct cdn_session_cmd *c) {
    for (int fd = 1; fd <= 2; fd++) {
        c->fd = fd;
        cdn_redact_feed(c->redactor, &c->rs[fd - 1], NULL, 0, true, tee_clean, c);
        cdn_redact_stream_clear(&c->rs[fd - 1]);
    }
}

/* The overlay is the task's whole disk: past the policy's disk_mib the task ends. */
static int check_disk(struct cdn_session *s, cdn_err **err) {
    struct stat st;
    if (!s->overlay || !s->spec->disk_max_bytes || stat(s->overlay, &st) < 0 ||
        (uint64_t)st.st_blocks * 512 <= s->spec->disk_max_bytes)
        return 0;
    int r = cdn_err_set(err, EFBIG, "the task's disk grew to %.1f MiB, past the policy's %.1f MiB",
                        (double)st.st_blocks * 512 / 1048576,
                        (double)s->spec->disk_max_bytes / 1048576);
    cdn_evidence_limit_hit(s->ev, "limits.disk_mib", cdn_err_msg(*err));
    return r;
}

int cdn_session_poll(struct cdn_session *s, int wake_fd, int timeout_ms, cdn_err **err) {
    if (!s->ch)
        return cdn_err_set(err, ENOTCONN, "the sandbox has no VM");
    int r = check_disk(s, err);
    return r < 0 ? r : cdn_channel_poll_wake(s->ch, wake_fd, timeout_ms, err);
}

int cdn_session_cmd_start(struct cdn_session *s, const struct cdn_exec_spec *x, cdn_output_fn fn,
                          void *ud, struct cdn_session_cmd **out, cdn_err **err) {
    if (!s->ch)
        return cdn_err_set(err, ENOTCONN, "the sandbox has no VM");
    struct cdn_session_cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return cdn_err_set(err, ENOMEM, "out of memory");
    c->fn = fn;
    c->ud = ud;
    c->redactor = s->redactor;
    struct task_cmd_env env = {0};
    int r = cdn_evidence_cmd_begin(s->ev, x->argv, x->argc, x->cwd, &c->ev, err);
    if (r >= 0)
        r = task_cmd_env(s, x, &env, err);
    if (r >= 0) {
        struct cdn_exec_spec with = *x;
        if (env.env) {
            with.env = env.env;
            with.envc = env.envc;
        }
        r = cdn_channel_exec_start(s->ch, &with, tee_output, c, &c->stream, err);
    }
    task_cmd_env_free(&env);
    if (r < 0) {
        if (c->ev) {
            struct cdn_evidence_exit ex = {.failed = true};
            cdn_evidence_cmd_end(s->ev, c->ev, &ex, NULL);
        }
        free(c);
        return r;
    }
    *out = c;
    return 0;
}

int cdn_session_cmd_stdin(struct cdn_session *s, struct cdn_session_cmd *c, const void *data,
                          size_t len, cdn_err **err) {
    if (!s->ch)
        return cdn_err_set(err, ENOTCONN, "the sandbox has no VM");
    int r = len ? cdn_channel_exec_stdin(s->ch, c->stream, data, len, TRANSFER_TIMEOUT_MS, err) : 0;
    return r < 0 ? r : cdn_channel_exec_stdin_close(s->ch, c->stream, err);
}

void cdn_session_cmd_detach(struct cdn_session *s, struct cdn_session_cmd *c) {
    (void)s;
    c->detached = true;
}

bool cdn_session_cmd_done(struct cdn_session *s, const struct cdn_session_cmd *c) {
    return !s->ch || cdn_channel_exec_done(s->ch, c->stream) != 0;
}

int cdn_session_cmd_signal(struct cdn_session *s, struct cdn_session_cmd *c, int signo,
                           cdn_err **err) {
    return s->ch ? cdn_channel_exec_signal(s->ch, c->stream, signo, err) : 0;
}

int cdn_session_cmd_finish(struct cdn_session *s, struct cdn_session_cmd *c, int timeout_ms,
                           struct cdn_exec_result *res, cdn_err **err) {
    *res = (struct cdn_exec_result){0};
    int r = s->ch ? cdn_channel_exec_wait(s->ch, c->stream, timeout_ms, res, err)
                  : cdn_err_set(err, ENOTCONN, "the sandbox's VM is gone");
    tee_flush(c);
    struct cdn_evidence_exit ex = {.exit_code = res->exit_code,
                                   .signal = res->signal,
                                   .timed_out = res->timed_out,
                                   .truncated = res->output_truncated,
                                   .failed = r < 0};
    cdn_err *ev_err = NULL;
    if (cdn_evidence_cmd_end(s->ev, c->ev, &ex, &ev_err) < 0 && r >= 0) {
        *err = ev_err;
        ev_err = NULL;
        r = -EIO;
    }
    cdn_err_free(ev_err);
    free(c);
    if (r >= 0 && res->output_truncated)
        cdn_evidence_limit_hit(s->ev, "exec.output_limit", "the command's output was truncated");
    return r;
}

/* The limit a refusal names, for the evidence: the archive reader's messages say which. */
static void note_refusal(struct cdn_session *s, const char *what, const cdn_err *e) {
    cdn_evidence_limit_hit(s->ev, what, cdn_err_msg(e));
}

int task_vm_collect(struct cdn_session *s, cdn_err **err) {
    if (!s->ch)
        return cdn_err_set(err, ENOTCONN, "the sandbox has no VM");
    struct cdn_archive_limits lim = s->spec->result_limits;
    task_result_limits_fill(&lim);
    cdn_workspace_listing_free(&s->listing);
    int r =
        task_collect_workspace(s->ch, s->result_dir, &lim, &s->listing, TRANSFER_TIMEOUT_MS, err);
    if (r < 0)
        note_refusal(s, "result", *err);
    return r;
}

int task_vm_artifacts(struct cdn_session *s, cdn_err **err) {
    const struct cdn_task_spec *spec = s->spec;
    if (!spec->n_artifacts)
        return 0;
    if (!s->ch)
        return cdn_err_set(err, ENOTCONN, "the sandbox has no VM");
    struct cdn_archive_limits lim = spec->result_limits;
    task_result_limits_fill(&lim);
    struct task_artifact_caps caps = {
        .max_each = spec->artifact_max_bytes ? spec->artifact_max_bytes : DEFAULT_ARTIFACT_BYTES,
        .max_total =
            spec->artifacts_max_total ? spec->artifacts_max_total : DEFAULT_ARTIFACTS_TOTAL};
    int r = task_pull_artifacts(s->ch, s->ev, s->cwd ? s->cwd : "/", spec->artifacts,
                                spec->n_artifacts, &caps, &lim, TRANSFER_TIMEOUT_MS, err);
    if (r < 0)
        note_refusal(s, "artifacts", *err);
    return r;
}

/* No graceful shutdown: the guest is discarded, and destroying it outright is faster than
 * letting it power off (libvirt's destroy then raced a QEMU already on its way out). */
void task_vm_release(struct cdn_session *s) {
    cdn_channel_freep(&s->ch); /* its open egress connections are recorded first */
    cdn_egress_freep(&s->egress);
    struct task_vm_up u = {
        .vm = TAKE_PTR(s->vm), .overlay = TAKE_PTR(s->overlay), .host = TAKE_PTR(s->host)};
    if (s->host_lost)
        task_vm_abandon(&u);
    else
        task_vm_down(&u);
    if (s->saved) { /* a paused session's memory on disk */
        unlink(s->saved);
        free(TAKE_PTR(s->saved));
    }
}

void cdn_session_host_lost(struct cdn_session *s) { s->host_lost = true; }

/* The VM's facts into the result and the evidence. */
static void note_vm(struct cdn_session *t, const struct task_vm_up *u) {
    struct cdn_task_result *res = &t->res;
    res->accel = u->accel;
    res->transport = u->transport;
    res->create_ms = u->create_ms;
    res->boot_ms = u->boot_ms;
    if (u->vm) {
        snprintf(res->vm, sizeof(res->vm), "%s", cdn_vm_name(u->vm));
        free(res->console);
        res->console = strdup(cdn_vm_console_path(u->vm));
    }
    if (u->accel) {
        cdn_evidence_fact(t->ev, "accel", res->accel);
        cdn_evidence_fact(t->ev, "transport", res->transport);
        cdn_evidence_fact_int(t->ev, "memory_mib", u->memory_mib);
        cdn_evidence_fact_int(t->ev, "vcpus", u->vcpus);
    }
}

/* The session takes u's VM (whatever got that far): its release is the session's now. */
static void take_vm(struct cdn_session *t, struct task_vm_up *u) {
    note_vm(t, u);
    t->host = TAKE_PTR(u->host);
    t->vm = TAKE_PTR(u->vm);
    t->ch = TAKE_PTR(u->ch);
    t->overlay = TAKE_PTR(u->overlay);
}

/* With the VM up: the policy's egress behind its channel, the workspace uploaded. */
static int task_vm_ready(struct cdn_session *t, cdn_err **err) {
    int r = task_egress_attach(t, err);
    if (r < 0)
        return r;
    cdn_evidence_fact_int(t->ev, "create_ms", (long long)t->res.create_ms);
    cdn_evidence_fact_int(t->ev, "boot_ms", (long long)t->res.boot_ms);
    if (task_cancelled(t->spec))
        return cdn_err_set(err, EINTR, "cancelled");
    if (t->ws &&
        (r = task_upload_workspace(t->ch, cdn_workspace_path(t->ws), TRANSFER_TIMEOUT_MS, err)) < 0)
        return r;
    return 0;
}

int task_vm_boot(struct cdn_session *t, cdn_err **err) {
    const struct cdn_task_spec *spec = t->spec;
    if (t->vm)
        return cdn_err_set(err, EALREADY, "the sandbox's VM is already running");
    if (t->warm) { /* booted already: a warm VM from the pool */
        struct task_vm_up u;
        uint64_t idle_ms;
        uint64_t boot_ms = cdn_warm_boot_ms(t->warm);
        bool cloned = cdn_warm_cloned(t->warm), own = cdn_warm_for_sandbox(t->warm);
        task_warm_release(TAKE_PTR(t->warm), &u, &t->warm_dir, &idle_ms);
        if (!own) {
            u.create_ms = 0;
            u.boot_ms = 0; /* this sandbox waited for no boot */
        }
        take_vm(t, &u);
        cdn_evidence_fact(t->ev, "vm", t->res.vm);
        cdn_evidence_fact(t->ev, "started_from",
                          own ? "a clone of a warm pool template" : "warm pool");
        cdn_evidence_fact(t->ev, "warm_vm", cloned ? "cloned from a saved template" : "booted");
        cdn_evidence_fact_int(t->ev, "warm_boot_ms", (long long)boot_ms);
        cdn_evidence_fact_int(t->ev, "warm_idle_ms", (long long)idle_ms);
        return task_vm_ready(t, err);
    }
    struct task_vm_req q = {.state_dir = spec->state_dir,
                            .images_dir = spec->images_dir,
                            .kernel_args = spec->kernel_args,
                            .uri = spec->uri,
                            .accel = spec->accel,
                            .id = t->res.id,
                            .dir = t->dir,
                            .devbox = t->devbox,
                            .memory_mib = spec->memory_mib,
                            .vcpus = spec->vcpus,
                            .boot_timeout_ms = spec->boot_timeout_ms,
                            .cancel = spec->cancel,
                            .on_notice = spec->on_notice,
                            .ud = spec->ud};
    struct task_vm_up u;
    int r = task_vm_up(&q, &u, err);
    take_vm(t, &u);
    return r < 0 ? r : task_vm_ready(t, err);
}
