/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task: boot, run, tear down. Resources are declared in the order they are acquired so the
 * cleanup attributes release them in reverse: channel, then VM (destroyed, socket removed), then
 * the libvirt connection (and any daemons it started). */
#include "task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "task_gc.h"
#include "vm.h"

#define POLL_SLICE_MS 100

static int make_dir(const char *path, mode_t mode, cdn_err **err) {
    _cleanup_free_ char *copy = strdup(path);
    if (!copy)
        return cdn_err_set(err, ENOMEM, "out of memory");
    for (char *s = strchr(copy + 1, '/');; s = strchr(s + 1, '/')) {
        if (s)
            *s = '\0';
        if (mkdir(copy, mode) < 0 && errno != EEXIST)
            return cdn_err_set(err, errno, "mkdir %s: %m", copy);
        if (!s)
            break;
        *s = '/';
    }
    /* libvirt's QEMU runs unprivileged: it must be able to pass through to the task folder. */
    return chmod(path, mode) < 0 ? cdn_err_set(err, errno, "chmod %s: %m", path) : 0;
}

static int new_id(char id[17], cdn_err **err) {
    uint8_t raw[8];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return cdn_err_set(err, errno, "getrandom: %m");
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* The overlay goes with the task: after the VM that wrote it is destroyed (declared before it). */
static void unlink_and_free(char **path) {
    if (*path) {
        unlink(*path);
        free(*path);
    }
}

__attribute__((format(printf, 2, 3))) static void notice(const struct cdn_task_spec *spec,
                                                         const char *fmt, ...) {
    if (!spec->on_notice)
        return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    spec->on_notice(spec->ud, line);
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
        notice(spec, "using QEMU TCG (slower): %s", a.why);
    *kvm = a.kvm;
    return 0;
}

static void owner_clear(const char **dir) { cdn_task_owner_clear(*dir); }

static bool cancelled(const struct cdn_task_spec *spec) { return spec->cancel && *spec->cancel; }

/* Waits for the command, in slices, so a cancellation is seen within POLL_SLICE_MS. */
static int run_command(const struct cdn_task_spec *spec, struct cdn_channel *ch,
                       struct cdn_exec_result *res, cdn_err **err) {
    struct cdn_exec_spec x = {.argv = spec->argv,
                              .argc = spec->argc,
                              .env = spec->env,
                              .envc = spec->envc,
                              .cwd = spec->workdir,
                              .timeout_ms = spec->timeout_ms,
                              .output_limit = spec->output_limit};
    uint64_t id;
    int r = cdn_channel_exec_start(ch, &x, spec->on_output, spec->ud, &id, err);
    if (r < 0)
        return r;
    while (!cdn_channel_exec_done(ch, id)) {
        if (cancelled(spec))
            return cdn_err_set(err, EINTR, "cancelled");
        r = cdn_channel_poll(ch, POLL_SLICE_MS, err);
        if (r < 0)
            return r;
    }
    return cdn_channel_exec_wait(ch, id, 1000, res, err);
}

int cdn_task_run(const struct cdn_task_spec *spec, struct cdn_task_result *res, cdn_err **err) {
    uint64_t t0 = cdn_now_ms();
    *res = (struct cdn_task_result){0};
    int r = new_id(res->id, err);
    if (r < 0)
        return r;
    snprintf(res->vm, sizeof(res->vm), "cordon-%s", res->id);
    _cleanup_free_ char *tasks = NULL, *dir = NULL, *daemons = NULL, *kernel = NULL, *initrd = NULL,
                        *base = NULL, *cmdline = NULL;
    const char *image = spec->image ? spec->image : "minimal";
    /* minimal: the initramfs is the whole guest. devbox: the same initramfs mounts a Debian root
     * from the task's overlay of devbox.qcow2 and switches to it. */
    bool devbox = strcmp(image, "devbox") == 0;
    if (!devbox && strcmp(image, "minimal") != 0)
        return cdn_err_set(err, EINVAL, "unknown image '%s' (available: minimal, devbox)", image);
    if (asprintf(&tasks, "%s/tasks", spec->state_dir) < 0 ||
        asprintf(&dir, "%s/%s", tasks, res->id) < 0 ||
        asprintf(&daemons, "%s/run", spec->state_dir) < 0 ||
        asprintf(&kernel, "%s/kernel/vmlinux", spec->images_dir) < 0 ||
        asprintf(&initrd, "%s/minimal.cpio.lz4", spec->images_dir) < 0 ||
        asprintf(&base, "%s/devbox.qcow2", spec->images_dir) < 0 ||
        asprintf(&cmdline, "%s %s", devbox ? "cordon.root=/dev/vda" : "",
                 spec->kernel_args ? spec->kernel_args : "") < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    /* QEMU (an unprivileged user under libvirt) opens the task's disk: it must be able to pass
     * through the state folder. */
    if ((r = make_dir(spec->state_dir, 0711, err)) < 0 || (r = make_dir(tasks, 0711, err)) < 0 ||
        (r = make_dir(dir, 0711, err)) < 0)
        return r;
    /* Declared before the overlay and the VM, so the mark goes only after they have. */
    if ((r = cdn_task_owner_write(dir, err)) < 0)
        return r;
    _cleanup_(owner_clear) const char *owned = dir;
    _cleanup_(unlink_and_free) char *overlay = NULL;
    if (devbox) {
        if (asprintf(&overlay, "%s/disk.qcow2", dir) < 0)
            return cdn_err_set(err, ENOMEM, "out of memory");
        if ((r = cdn_vm_overlay_create(base, overlay, err)) < 0)
            return r;
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
        notice(spec, "cleaned up after %u dead task%s (%u domain%s destroyed, %u files removed)",
               gc.tasks, gc.tasks == 1 ? "" : "s", gc.domains, gc.domains == 1 ? "" : "s",
               gc.files);
    bool kvm;
    if ((r = choose_accel(spec, host, kernel, initrd, &kvm, err)) < 0)
        return r;
    res->accel = kvm ? "kvm" : "tcg";
    /* vhost-vsock is a kernel vhost device: it needs KVM's ioeventfd/irqfd, not only the node. */
    const char *why = "vsock needs KVM";
    bool vsock = kvm && cdn_vm_vsock_usable(&why);
    if (!vsock)
        notice(spec, "agent channel is virtio-serial: %s", why);
    res->transport = vsock ? "vsock" : "serial";
    /* A compiler needs more than the minimal image's default. */
    unsigned memory = spec->memory_mib ? spec->memory_mib : devbox ? 1024 : 512;
    struct cdn_vm_spec vspec = {.id = res->id,
                                .dir = dir,
                                .kernel = kernel,
                                .initrd = initrd,
                                .cmdline_extra = cmdline,
                                .disk = overlay,
                                .disk_base = devbox ? base : NULL,
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
    struct cdn_channel_opts copts = {.name = res->vm, .handshake_timeout_ms = boot_ms};
    _cleanup_(cdn_channel_freep) struct cdn_channel *ch = NULL;
    if ((r = cdn_channel_open(fd, &copts, &ch, err)) < 0)
        return cdn_err_prefix(err, "booting (console: %s)", res->console);
    res->boot_ms = cdn_now_ms() - boot0;
    if (cancelled(spec))
        return cdn_err_set(err, EINTR, "cancelled");
    r = run_command(spec, ch, &res->exec, err);
    /* No graceful shutdown: the guest is discarded, and destroying it outright is faster than
     * letting it power off (libvirt's destroy then raced a QEMU already on its way out). */
    res->total_ms = cdn_now_ms() - t0;
    return r;
}
