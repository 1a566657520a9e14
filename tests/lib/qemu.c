/* SPDX-License-Identifier: Apache-2.0 */
/* Plain-QEMU guests for tests: every boot is deadline-bound by its caller and always destroyed. */
#include "qemu.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"

const char *th_images_dir(void) {
    const char *d = getenv("CORDON_IMAGES");
    return d && *d ? d : "build/images";
}

void th_vm_boot(struct th_vm *vm, const char *extra_cmdline) {
    th_vm_boot_accel(vm, extra_cmdline, false);
}

void th_vm_boot_accel(struct th_vm *vm, const char *extra_cmdline, bool kvm) {
    th_vm_boot_opts(vm, &(struct th_vm_opts){.extra_cmdline = extra_cmdline, .kvm = kvm});
}

void th_vm_boot_opts(struct th_vm *vm, const struct th_vm_opts *o) {
    *vm = (struct th_vm){0};
    char kernel[4096], initrd[4096];
    snprintf(kernel, sizeof(kernel), "%s/kernel/vmlinux", th_images_dir());
    snprintf(initrd, sizeof(initrd), "%s/minimal.cpio.lz4", th_images_dir());
    if (access(kernel, R_OK) < 0 || access(initrd, R_OK) < 0)
        FAIL("guest image missing under %s: run `make images`", th_images_dir());
    if (o->disk && access(o->disk, R_OK) < 0)
        FAIL("guest disk %s missing", o->disk);
    vm->dir = th_tmpdir();
    if (asprintf(&vm->sock, "%s/agent.sock", vm->dir) < 0 ||
        asprintf(&vm->console, "%s/console.log", vm->dir) < 0 ||
        (o->qga && asprintf(&vm->qga_sock, "%s/qga.sock", vm->dir) < 0))
        FAIL("out of memory");
    char append[1024], serial[4200], chardev[4200], qchardev[4200], drive[4400];
    snprintf(append, sizeof(append), "console=ttyS0 panic=-1 quiet %s %s",
             o->disk ? "cordon.root=/dev/vda" : "", o->extra_cmdline ? o->extra_cmdline : "");
    snprintf(serial, sizeof(serial), "file:%s", vm->console);
    snprintf(chardev, sizeof(chardev), "socket,id=agent,path=%s,server=on,wait=off", vm->sock);
    snprintf(qchardev, sizeof(qchardev), "socket,id=qga,path=%s,server=on,wait=off",
             vm->qga_sock ? vm->qga_sock : "");
    snprintf(drive, sizeof(drive), "file=%s,if=virtio,format=qcow2,snapshot=on",
             o->disk ? o->disk : "");
    const char *argv[64] = {"qemu-system-x86_64",
                            "-M",
                            "q35",
                            "-accel",
                            o->kvm ? "kvm" : "tcg",
                            "-cpu",
                            o->kvm ? "host" : "qemu64",
                            "-m",
                            o->disk ? "1024" : "512",
                            "-smp",
                            "1",
                            "-nodefaults",
                            "-no-user-config",
                            "-display",
                            "none",
                            "-no-reboot",
                            "-kernel",
                            kernel,
                            "-initrd",
                            initrd,
                            "-append",
                            append,
                            "-serial",
                            serial,
                            "-device",
                            "virtio-serial-pci,id=vser",
                            "-chardev",
                            chardev,
                            "-device",
                            "virtserialport,bus=vser.0,chardev=agent,name=org.cordon.agent.0"};
    size_t n = 0;
    while (argv[n])
        n++;
    if (o->qga) {
        argv[n++] = "-chardev";
        argv[n++] = qchardev;
        argv[n++] = "-device";
        argv[n++] = "virtserialport,bus=vser.0,chardev=qga,name=org.qemu.guest_agent.0";
    }
    if (o->disk) {
        argv[n++] = "-drive";
        argv[n++] = drive;
    }
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(devnull, 0);
        dup2(devnull, 1);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    vm->qemu = pid;
}

int th_vm_channel(struct th_vm *vm, int handshake_ms, struct cdn_channel **ch, cdn_err **err) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", vm->sock);
    uint64_t end = th_now_ms() + 10000; /* QEMU creates the socket before the guest starts */
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            struct cdn_channel_opts opts = {.name = "vm test",
                                            .handshake_timeout_ms = handshake_ms};
            return cdn_channel_open(fd, &opts, ch, err);
        }
        close(fd);
        if (th_now_ms() > end || waitpid(vm->qemu, NULL, WNOHANG) == vm->qemu)
            return cdn_err_set(err, ECONNREFUSED, "qemu's agent socket %s never appeared",
                               vm->sock);
        usleep(10000);
    }
}

bool th_vm_wait_exit(struct th_vm *vm, int timeout_ms) {
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    while (th_now_ms() < end) {
        if (waitpid(vm->qemu, NULL, WNOHANG) == vm->qemu) {
            vm->qemu = 0;
            return true;
        }
        usleep(10000);
    }
    return false;
}

void th_vm_destroy(struct th_vm *vm) {
    if (vm->qemu > 0) {
        kill(vm->qemu, SIGKILL);
        waitpid(vm->qemu, NULL, 0);
        vm->qemu = 0;
    }
    th_rmtree(vm->dir);
    free(vm->dir);
    free(vm->sock);
    free(vm->console);
    free(vm->qga_sock);
    *vm = (struct th_vm){0};
}
