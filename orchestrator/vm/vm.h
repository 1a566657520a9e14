/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_vm: task VMs through libvirt (the only module that touches libvirt). A host is a libvirt
 * connection; a VM is a transient domain named cordon-<id>, booted from a kernel and initramfs,
 * with no NIC, its console in a log file and the agent's channel on a unix socket in its folder. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct cdn_vm_host;
struct cdn_vm;

struct cdn_vm_host_opts {
    const char *uri;        /* default "qemu:///system" */
    const char *daemon_dir; /* pid files of daemons we start (default /run/cordon) */
};

/* Connects to libvirt. For the local system URI, when no libvirt daemon answers (no systemd on
 * the host), starts virtlogd and libvirtd itself and remembers to stop them. */
int cdn_vm_host_open(const struct cdn_vm_host_opts *opts, struct cdn_vm_host **out, cdn_err **err);
/* Closes the connection (libvirt destroys any domain still running: they autodestroy) and stops
 * the daemons this host started. */
void cdn_vm_host_close(struct cdn_vm_host *h);
void cdn_vm_host_closep(struct cdn_vm_host **h);
bool cdn_vm_host_started_daemons(const struct cdn_vm_host *h);
/* Names of the cordon-* domains this libvirt knows (running or not); caller frees each and the
 * array. */
int cdn_vm_host_list(struct cdn_vm_host *h, char ***names, size_t *n, cdn_err **err);

/* Whether KVM can run guests here. /dev/kvm existing is not enough (on nested hosts without
 * hardware virtualisation it exists and fails): the CPU must offer vmx or svm too. Otherwise the
 * reason is returned in *why and guests run under QEMU TCG. */
bool cdn_vm_kvm_usable(const char **why);

struct cdn_vm_spec {
    const char *id;  /* the domain is cordon-<id>; [A-Za-z0-9_-], at most 64 bytes */
    const char *dir; /* the task folder (must exist): agent.sock and console.log go here */
    const char *kernel;
    const char *initrd;
    const char *cmdline_extra; /* appended to the kernel command line, may be NULL */
    const char *disk;          /* qcow2 attached as /dev/vda (a task's overlay), may be NULL */
    const char *disk_base;     /* the overlay's read-only qcow2 backing file (shared by tasks) */
    unsigned memory_mib;       /* default 512 */
    unsigned vcpus;            /* default 1 */
    bool kvm;                  /* domain type kvm (host CPU) instead of qemu (TCG, qemu64) */
};

/* Creates a qcow2 overlay at path whose backing file is the (read-only) base image. */
int cdn_vm_overlay_create(const char *base, const char *path, cdn_err **err);

/* Generates the domain XML (exposed for tests; every value is escaped). Returns malloc'd XML. */
int cdn_vm_domain_xml(const struct cdn_vm_spec *spec, char **xml, cdn_err **err);

int cdn_vm_start(struct cdn_vm_host *h, const struct cdn_vm_spec *spec, struct cdn_vm **out,
                 cdn_err **err);
/* Connects to the agent's port, retrying until timeout_ms: the fd for cdn_channel_open. */
int cdn_vm_agent_fd(struct cdn_vm *vm, int timeout_ms, cdn_err **err);
const char *cdn_vm_name(const struct cdn_vm *vm);
const char *cdn_vm_console_path(const struct cdn_vm *vm);
/* True while libvirt still has the domain (it goes when the guest powers off). */
bool cdn_vm_running(struct cdn_vm *vm);
/* Destroys the domain if it still exists and removes the agent socket; the console log stays as
 * evidence. Safe in every state, including after the guest powered itself off. */
void cdn_vm_destroy(struct cdn_vm *vm);
void cdn_vm_destroyp(struct cdn_vm **vm);
