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

/* KVM when asked for, or (auto) when a probe boot on this host proved it; TCG otherwise, said in
 * one line. */
static int choose_accel(const struct cdn_task_spec *spec, struct cdn_vm_host *host,
                        const char *kernel, const char *initrd, bool *kvm, cdn_err **err) {
    const char *want = spec->accel ? spec->accel : "auto";
    *kvm = false;
    if (strcmp(want, "tcg") == 0)
        return 0;
    if (strcmp(want, "kvm") != 0 && strcmp(want, "auto") != 0)
        return cdn_err_set(err, EINVAL, "unknown accelerator '%s' (auto, kvm or tcg)", want);
    _cleanup_free_ char *cache = NULL, *scratch = NULL;
    if (asprintf(&cache, "%s/accel.json", spec->state_dir) < 0 ||
        asprintf(&scratch, "%s/probe", spec->state_dir) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    struct cdn_vm_accel_opts o = {
        .cache = cache, .scratch = scratch, .kernel = kernel, .initrd = initrd};
    struct cdn_vm_accel a;
    int r = cdn_vm_accel_choose(host, &o, &a, err);
    if (r < 0)
        return r;
    if (!a.kvm && strcmp(want, "kvm") == 0)
        return cdn_err_set(err, ENODEV, "KVM was asked for but cannot run guests here: %s", a.why);
    if (!a.kvm)
        task_notice(spec, "using QEMU TCG (slower): %s", a.why);
    *kvm = a.kvm;
    return 0;
}

/* A command: its output goes, redacted, to the evidence and to the caller. */
struct cdn_session_cmd {
    struct cdn_evidence_cmd *ev;
    cdn_output_fn fn;
    void *ud;
    uint64_t stream;
    const struct cdn_redactor *redactor;
    struct cdn_redact_stream rs[2];
    int fd; /* the one being fed (for the sink) */
};

static int tee_clean(void *ud, const uint8_t *data, size_t len) {
    struct cdn_session_cmd *c = ud;
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
    cdn_vm_destroyp(&s->vm);
    if (s->overlay) {
        unlink(s->overlay);
        free(s->overlay);
        s->overlay = NULL;
    }
    cdn_vm_host_closep(&s->host);
}

int task_vm_boot(struct cdn_session *t, cdn_err **err) {
    const struct cdn_task_spec *spec = t->spec;
    struct cdn_task_result *res = &t->res;
    if (t->vm)
        return cdn_err_set(err, EALREADY, "the sandbox's VM is already running");
    _cleanup_free_ char *daemons = NULL, *kernel = NULL, *initrd = NULL, *base = NULL,
                        *cmdline = NULL;
    if (asprintf(&daemons, "%s/run", spec->state_dir) < 0 ||
        asprintf(&kernel, "%s/kernel/vmlinux", spec->images_dir) < 0 ||
        asprintf(&initrd, "%s/minimal.cpio.lz4", spec->images_dir) < 0 ||
        asprintf(&base, "%s/devbox.qcow2", spec->images_dir) < 0 ||
        asprintf(&cmdline, "%s %s", t->devbox ? "cordon.root=/dev/vda" : "",
                 spec->kernel_args ? spec->kernel_args : "") < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    int r;
    if (t->devbox) {
        if (asprintf(&t->overlay, "%s/disk.qcow2", t->dir) < 0) {
            t->overlay = NULL;
            return cdn_err_set(err, ENOMEM, "out of memory");
        }
        if ((r = cdn_vm_overlay_create(base, t->overlay, err)) < 0)
            return r;
    }
    struct cdn_vm_host_opts hopts = {.uri = spec->uri, .daemon_dir = daemons};
    if ((r = cdn_vm_host_open(&hopts, &t->host, err)) < 0)
        return r;
    /* Leftovers of tasks whose cordon died without tearing down (killed, crashed). */
    struct cdn_task_gc_report gc;
    if ((r = cdn_task_gc(spec->state_dir, t->host, &gc, err)) < 0)
        return r;
    if (gc.tasks)
        task_notice(
            spec, "cleaned up after %u dead task%s (%u domain%s destroyed, %u files removed)",
            gc.tasks, gc.tasks == 1 ? "" : "s", gc.domains, gc.domains == 1 ? "" : "s", gc.files);
    bool kvm;
    if ((r = choose_accel(spec, t->host, kernel, initrd, &kvm, err)) < 0)
        return r;
    res->accel = kvm ? "kvm" : "tcg";
    /* vhost-vsock is a kernel vhost device: it needs KVM's ioeventfd/irqfd, not only the node. */
    const char *why = "vsock needs KVM";
    bool vsock = kvm && cdn_vm_vsock_usable(&why);
    if (!vsock)
        task_notice(spec, "agent channel is virtio-serial: %s", why);
    res->transport = vsock ? "vsock" : "serial";
    cdn_evidence_fact(t->ev, "accel", res->accel);
    cdn_evidence_fact(t->ev, "transport", res->transport);
    /* A compiler needs more than the minimal image's default. */
    unsigned memory = spec->memory_mib ? spec->memory_mib : t->devbox ? 1024 : 512;
    cdn_evidence_fact_int(t->ev, "memory_mib", memory);
    cdn_evidence_fact_int(t->ev, "vcpus", spec->vcpus ? spec->vcpus : 1);
    struct cdn_vm_spec vspec = {.id = res->id,
                                .dir = t->dir,
                                .kernel = kernel,
                                .initrd = initrd,
                                .cmdline_extra = cmdline,
                                .disk = t->overlay,
                                .disk_base = t->devbox ? base : NULL,
                                .memory_mib = memory,
                                .vcpus = spec->vcpus,
                                .kvm = kvm,
                                .transport = vsock ? CDN_VM_VSOCK : CDN_VM_SERIAL};
    uint64_t boot0 = cdn_now_ms();
    if ((r = cdn_vm_start(t->host, &vspec, &t->vm, err)) < 0)
        return r;
    res->create_ms = cdn_now_ms() - boot0;
    free(res->console);
    res->console = strdup(cdn_vm_console_path(t->vm));
    int boot_ms = spec->boot_timeout_ms > 0 ? spec->boot_timeout_ms : 60000;
    int fd = cdn_vm_agent_fd(t->vm, boot_ms, err);
    if (fd < 0)
        return fd;
    /* A cancellation ends any wait on the channel (a long transfer included) within 100 ms. */
    struct cdn_channel_opts copts = {
        .name = res->vm, .handshake_timeout_ms = boot_ms, .cancel = spec->cancel};
    if ((r = cdn_channel_open(fd, &copts, &t->ch, err)) < 0)
        return cdn_err_prefix(err, "booting (console: %s)", res->console);
    if ((r = task_egress_attach(t, err)) < 0)
        return r;
    res->boot_ms = cdn_now_ms() - boot0;
    cdn_evidence_fact_int(t->ev, "create_ms", (long long)res->create_ms);
    cdn_evidence_fact_int(t->ev, "boot_ms", (long long)res->boot_ms);
    if (task_cancelled(spec))
        return cdn_err_set(err, EINTR, "cancelled");
    if (t->ws &&
        (r = task_upload_workspace(t->ch, cdn_workspace_path(t->ws), TRANSFER_TIMEOUT_MS, err)) < 0)
        return r;
    return 0;
}
