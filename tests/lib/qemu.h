/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: boots the minimal guest image with plain QEMU (TCG, q35, direct kernel boot) and
 * connects to its agent over virtio-serial. The product boots through libvirt (orchestrator/vm);
 * this is the reference tests and the boot benchmark compare against. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "channel.h"

struct th_vm {
    pid_t qemu;
    char *dir; /* private: agent.sock, console.log */
    char *sock;
    char *console;
    char *qga_sock; /* qemu-guest-agent's port (th_vm_boot_opts with qga), else NULL */
};

struct th_vm_opts {
    const char *extra_cmdline;
    bool kvm;
    const char *disk; /* a qcow2 root (booted with cordon.root=/dev/vda), written to a snapshot */
    bool qga;         /* a second port, org.qemu.guest_agent.0, on qga.sock */
};
void th_vm_boot_opts(struct th_vm *vm, const struct th_vm_opts *o);

/* Where `make images` put the kernel and initramfs ($CORDON_IMAGES, else build/images). */
const char *th_images_dir(void);
/* Starts QEMU with extra_cmdline appended to the kernel command line (NULL: none). */
void th_vm_boot(struct th_vm *vm, const char *extra_cmdline);
/* The same under KVM (-accel kvm, host CPU) when kvm is true. */
void th_vm_boot_accel(struct th_vm *vm, const char *extra_cmdline, bool kvm);
/* Connects to the agent's port and runs the handshake within handshake_ms. */
int th_vm_channel(struct th_vm *vm, int handshake_ms, struct cdn_channel **ch, cdn_err **err);
/* Waits up to timeout_ms for QEMU to exit by itself (the guest powered off). */
bool th_vm_wait_exit(struct th_vm *vm, int timeout_ms);
/* Kills QEMU if still running and removes its directory. */
void th_vm_destroy(struct th_vm *vm);
