/* SPDX-License-Identifier: Apache-2.0 */
/* A task's time in its VM. Resources are declared in the order they are acquired so the cleanup
 * attributes release them in reverse: channel, then VM (destroyed, socket removed), overlay, then
 * the libvirt connection (and any daemons it started). */
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
#include "vm.h"

#define POLL_SLICE_MS 100
#define TRANSFER_TIMEOUT_MS (10 * 60 * 1000)
#define DEFAULT_ARTIFACT_BYTES (64ull << 20)
#define DEFAULT_ARTIFACTS_TOTAL (256ull << 20)

/* The overlay goes with the task: after the VM that wrote it is destroyed (declared before it). */
static void unlink_and_free(char **path) {
    if (*path) {
        unlink(*path);
        free(*path);
    }
}

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

/* Output goes to the evidence and to the caller. */
struct tee {
    struct cdn_evidence_cmd *cmd;
    const struct cdn_task_spec *spec;
};

static int tee_output(void *ud, int fd, const uint8_t *data, size_t len) {
    struct tee *t = ud;
    cdn_evidence_cmd_output(t->cmd, fd, data, len);
    return t->spec->on_output ? t->spec->on_output(t->spec->ud, fd, data, len) : 0;
}

/* The overlay is the task's whole disk: past the policy's disk_mib the task ends. */
static int check_disk(struct task_ctx *t, cdn_err **err) {
    struct stat st;
    if (!t->overlay || !t->spec->disk_max_bytes || stat(t->overlay, &st) < 0 ||
        (uint64_t)st.st_blocks * 512 <= t->spec->disk_max_bytes)
        return 0;
    int r = cdn_err_set(err, EFBIG, "the task's disk grew to %.1f MiB, past the policy's %.1f MiB",
                        (double)st.st_blocks * 512 / 1048576,
                        (double)t->spec->disk_max_bytes / 1048576);
    cdn_evidence_limit_hit(t->ev, "limits.disk_mib", cdn_err_msg(*err));
    return r;
}

/* Waits for the command, in slices, so a cancellation is seen within POLL_SLICE_MS. */
static int run_command(struct task_ctx *t, struct cdn_channel *ch, cdn_err **err) {
    const struct cdn_task_spec *spec = t->spec;
    struct cdn_exec_spec x = {.argv = spec->argv,
                              .argc = spec->argc,
                              .env = spec->env,
                              .envc = spec->envc,
                              .cwd = t->cwd,
                              .timeout_ms = spec->timeout_ms,
                              .output_limit = spec->output_limit,
                              .rlimits = spec->rlimits,
                              .n_rlimits = spec->n_rlimits};
    struct tee tee = {.spec = spec};
    int r = cdn_evidence_cmd_begin(t->ev, spec->argv, spec->argc, t->cwd, &tee.cmd, err);
    if (r < 0)
        return r;
    uint64_t id;
    struct cdn_exec_result *res = &t->res->exec;
    r = cdn_channel_exec_start(ch, &x, tee_output, &tee, &id, err);
    while (r >= 0 && !cdn_channel_exec_done(ch, id)) {
        if (task_cancelled(spec))
            r = cdn_err_set(err, EINTR, "cancelled");
        else if ((r = check_disk(t, err)) == 0)
            r = cdn_channel_poll(ch, POLL_SLICE_MS, err);
    }
    if (r >= 0)
        r = cdn_channel_exec_wait(ch, id, 1000, res, err);
    struct cdn_evidence_exit ex = {.exit_code = res->exit_code,
                                   .signal = res->signal,
                                   .timed_out = res->timed_out,
                                   .truncated = res->output_truncated,
                                   .failed = r < 0};
    cdn_err *ev_err = NULL;
    if (cdn_evidence_cmd_end(t->ev, tee.cmd, &ex, &ev_err) < 0 && r >= 0) {
        *err = ev_err;
        return -EIO;
    }
    cdn_err_free(ev_err);
    if (r >= 0 && res->output_truncated)
        cdn_evidence_limit_hit(t->ev, "exec.output_limit", "the command's output was truncated");
    return r;
}

/* The limit a refusal names, for the evidence: the archive reader's messages say which. */
static void note_refusal(struct task_ctx *t, const char *what, const cdn_err *e) {
    cdn_evidence_limit_hit(t->ev, what, cdn_err_msg(e));
}

static int transfer_out(struct task_ctx *t, struct cdn_channel *ch, cdn_err **err) {
    const struct cdn_task_spec *spec = t->spec;
    struct cdn_archive_limits lim = spec->result_limits;
    task_result_limits_fill(&lim);
    int r;
    if (t->ws) {
        r = task_collect_workspace(ch, t->result_dir, &lim, &t->listing, TRANSFER_TIMEOUT_MS, err);
        if (r < 0) {
            note_refusal(t, "result", *err);
            return r;
        }
    }
    if (spec->n_artifacts) {
        struct task_artifact_caps caps = {
            .max_each =
                spec->artifact_max_bytes ? spec->artifact_max_bytes : DEFAULT_ARTIFACT_BYTES,
            .max_total =
                spec->artifacts_max_total ? spec->artifacts_max_total : DEFAULT_ARTIFACTS_TOTAL};
        r = task_pull_artifacts(ch, t->ev, t->cwd ? t->cwd : "/", spec->artifacts,
                                spec->n_artifacts, &caps, &lim, TRANSFER_TIMEOUT_MS, err);
        if (r < 0) {
            note_refusal(t, "artifacts", *err);
            return r;
        }
    }
    return 0;
}

int task_in_vm(struct task_ctx *t, cdn_err **err) {
    const struct cdn_task_spec *spec = t->spec;
    struct cdn_task_result *res = t->res;
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
    _cleanup_(unlink_and_free) char *overlay = NULL;
    if (t->devbox) {
        if (asprintf(&overlay, "%s/disk.qcow2", t->dir) < 0)
            return cdn_err_set(err, ENOMEM, "out of memory");
        if ((r = cdn_vm_overlay_create(base, overlay, err)) < 0)
            return r;
        t->overlay = overlay;
    }
    struct cdn_vm_host_opts hopts = {.uri = spec->uri, .daemon_dir = daemons};
    _cleanup_(cdn_vm_host_closep) struct cdn_vm_host *host = NULL;
    if ((r = cdn_vm_host_open(&hopts, &host, err)) < 0)
        return r;
    /* Leftovers of tasks whose cordon died without tearing down (killed, crashed). */
    struct cdn_task_gc_report gc;
    if ((r = cdn_task_gc(spec->state_dir, host, &gc, err)) < 0)
        return r;
    if (gc.tasks)
        task_notice(
            spec, "cleaned up after %u dead task%s (%u domain%s destroyed, %u files removed)",
            gc.tasks, gc.tasks == 1 ? "" : "s", gc.domains, gc.domains == 1 ? "" : "s", gc.files);
    bool kvm;
    if ((r = choose_accel(spec, host, kernel, initrd, &kvm, err)) < 0)
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
                                .disk = overlay,
                                .disk_base = t->devbox ? base : NULL,
                                .memory_mib = memory,
                                .vcpus = spec->vcpus,
                                .kvm = kvm,
                                .transport = vsock ? CDN_VM_VSOCK : CDN_VM_SERIAL};
    _cleanup_(cdn_vm_destroyp) struct cdn_vm *vm = NULL;
    uint64_t boot0 = cdn_now_ms();
    if ((r = cdn_vm_start(host, &vspec, &vm, err)) < 0)
        return r;
    res->create_ms = cdn_now_ms() - boot0;
    res->console = strdup(cdn_vm_console_path(vm));
    int boot_ms = spec->boot_timeout_ms > 0 ? spec->boot_timeout_ms : 60000;
    int fd = cdn_vm_agent_fd(vm, boot_ms, err);
    if (fd < 0)
        return fd;
    /* Ctrl-C ends any wait on the channel (a long transfer included) within 100 ms. */
    struct cdn_channel_opts copts = {
        .name = res->vm, .handshake_timeout_ms = boot_ms, .cancel = spec->cancel};
    _cleanup_(cdn_channel_freep) struct cdn_channel *ch = NULL;
    if ((r = cdn_channel_open(fd, &copts, &ch, err)) < 0)
        return cdn_err_prefix(err, "booting (console: %s)", res->console);
    res->boot_ms = cdn_now_ms() - boot0;
    if (task_cancelled(spec))
        return cdn_err_set(err, EINTR, "cancelled");
    if (t->ws &&
        (r = task_upload_workspace(ch, cdn_workspace_path(t->ws), TRANSFER_TIMEOUT_MS, err)) < 0)
        return r;
    if ((r = run_command(t, ch, err)) < 0)
        return r;
    if (task_cancelled(spec))
        return cdn_err_set(err, EINTR, "cancelled");
    r = transfer_out(t, ch, err);
    /* No graceful shutdown: the guest is discarded, and destroying it outright is faster than
     * letting it power off (libvirt's destroy then raced a QEMU already on its way out). */
    res->total_ms = cdn_now_ms() - t->t0;
    return r;
}
