/* SPDX-License-Identifier: Apache-2.0 */
/* A VM up to its agent's hello: the overlay (devbox), the libvirt connection (leftovers swept),
 * the accelerator and the transport chosen, the domain started (or cloned from a saved
 * template), the channel's handshake. A
 * session's boot and a warm VM's both start here; what the VM then carries (the policy's egress,
 * a workspace) is theirs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "logf.h"
#include "task_gc.h"
#include "task_internal.h"

#define vm_notice(q, ...) cdn_logf((q)->on_notice, (q)->ud, __VA_ARGS__)

/* KVM when asked for, or (auto) when a probe boot on this host proved it; TCG otherwise, said in
 * one line. */
static int choose_accel(const struct task_vm_req *q, struct cdn_vm_host *host, const char *kernel,
                        const char *initrd, bool *kvm, cdn_err **err) {
    const char *want = q->accel ? q->accel : "auto";
    *kvm = false;
    if (strcmp(want, "tcg") == 0)
        return 0;
    if (strcmp(want, "kvm") != 0 && strcmp(want, "auto") != 0)
        return cdn_err_set(err, EINVAL, "unknown accelerator '%s' (auto, kvm or tcg)", want);
    _cleanup_free_ char *cache = NULL, *scratch = NULL;
    if (asprintf(&cache, "%s/accel.json", q->state_dir) < 0 ||
        asprintf(&scratch, "%s/probe", q->state_dir) < 0)
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
        vm_notice(q, "using QEMU TCG (slower): %s", a.why);
    *kvm = a.kvm;
    return 0;
}

int task_vm_up(const struct task_vm_req *q, struct task_vm_up *u, cdn_err **err) {
    *u = (struct task_vm_up){0};
    _cleanup_free_ char *daemons = NULL, *kernel = NULL, *initrd = NULL, *base = NULL,
                        *cmdline = NULL;
    if (asprintf(&daemons, "%s/run", q->state_dir) < 0 ||
        asprintf(&kernel, "%s/kernel/vmlinux", q->images_dir) < 0 ||
        asprintf(&initrd, "%s/minimal.cpio.lz4", q->images_dir) < 0 ||
        asprintf(&base, "%s/devbox.qcow2", q->images_dir) < 0 ||
        asprintf(&cmdline, "%s %s", q->devbox ? "cordon.root=/dev/vda" : "",
                 q->kernel_args ? q->kernel_args : "") < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    int r;
    if (q->devbox) {
        if (asprintf(&u->overlay, "%s/disk.qcow2", q->dir) < 0) {
            u->overlay = NULL;
            return cdn_err_set(err, ENOMEM, "out of memory");
        }
        r = q->clone_disk ? cdn_vm_disk_copy(q->clone_disk, u->overlay, err)
                          : cdn_vm_overlay_create(base, u->overlay, err);
        if (r < 0)
            return r;
    }
    struct cdn_vm_host_opts hopts = {.uri = q->uri, .daemon_dir = daemons};
    if ((r = cdn_vm_host_open(&hopts, &u->host, err)) < 0)
        return r;
    /* Leftovers of tasks whose cordon died without tearing down (killed, crashed). */
    struct cdn_task_gc_report gc;
    if ((r = cdn_task_gc(q->state_dir, u->host, &gc, err)) < 0)
        return r;
    if (gc.tasks)
        vm_notice(q, "cleaned up after %u dead task%s (%u domain%s destroyed, %u files removed)",
                  gc.tasks, gc.tasks == 1 ? "" : "s", gc.domains, gc.domains == 1 ? "" : "s",
                  gc.files);
    bool kvm;
    if ((r = choose_accel(q, u->host, kernel, initrd, &kvm, err)) < 0)
        return r;
    u->accel = kvm ? "kvm" : "tcg";
    /* vhost-vsock is a kernel vhost device: it needs KVM's ioeventfd/irqfd, not only the node. */
    const char *why = "vsock needs KVM";
    bool serial = q->serial || q->clone_of; /* a clone keeps its template's channel */
    bool vsock = !serial && kvm && cdn_vm_vsock_usable(&why);
    if (!vsock && !serial)
        vm_notice(q, "agent channel is virtio-serial: %s", why);
    u->transport = vsock ? "vsock" : "serial";
    /* A compiler needs more than the minimal image's default. */
    u->memory_mib = q->memory_mib ? q->memory_mib : q->devbox ? 1024 : 512;
    u->vcpus = q->vcpus ? q->vcpus : 1;
    struct cdn_vm_spec vspec = {.id = q->id,
                                .dir = q->dir,
                                .kernel = kernel,
                                .initrd = initrd,
                                .cmdline_extra = cmdline,
                                .disk = u->overlay,
                                .disk_base = q->devbox ? base : NULL,
                                .memory_mib = u->memory_mib,
                                .vcpus = u->vcpus,
                                .kvm = kvm,
                                .transport = vsock ? CDN_VM_VSOCK : CDN_VM_SERIAL};
    uint64_t boot0 = cdn_now_ms();
    r = q->clone_of ? cdn_vm_clone(u->host, q->clone_of, &vspec, &u->vm, err)
                    : cdn_vm_start(u->host, &vspec, &u->vm, err);
    if (r < 0)
        return r;
    u->create_ms = cdn_now_ms() - boot0;
    int boot_ms = q->boot_timeout_ms > 0 ? q->boot_timeout_ms : 60000;
    int fd = cdn_vm_agent_fd(u->vm, boot_ms, err);
    if (fd < 0)
        return fd;
    /* A cancellation ends any wait on the channel (a long transfer included) within 100 ms. */
    struct cdn_channel_opts copts = {
        .name = cdn_vm_name(u->vm), .handshake_timeout_ms = boot_ms, .cancel = q->cancel};
    if ((r = cdn_channel_open(fd, &copts, &u->ch, err)) < 0)
        return cdn_err_prefix(err, "booting (console: %s)", cdn_vm_console_path(u->vm));
    u->boot_ms = cdn_now_ms() - boot0;
    return 0;
}

void task_vm_down(struct task_vm_up *u) {
    cdn_channel_freep(&u->ch);
    cdn_vm_destroyp(&u->vm);
    if (u->overlay) {
        unlink(u->overlay);
        free(u->overlay);
        u->overlay = NULL;
    }
    cdn_vm_host_closep(&u->host);
}

void task_vm_abandon(struct task_vm_up *u) {
    cdn_channel_freep(&u->ch);
    cdn_vm_abandon(TAKE_PTR(u->vm));
    if (u->overlay) {
        unlink(u->overlay);
        free(u->overlay);
        u->overlay = NULL;
    }
    cdn_vm_host_abandon(TAKE_PTR(u->host));
}
