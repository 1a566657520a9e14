/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_vm: task VMs through libvirt (the only module that touches libvirt). A host is a libvirt
 * connection; a VM is a transient domain named cordon-<id>, booted from a kernel and initramfs,
 * with no NIC, its console in a log file and the agent's channel on a unix socket in its folder. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct cdn_vm_host;
struct cdn_vm;

struct cdn_vm_host_opts {
    const char *uri;        /* default "qemu:///system" */
    const char *daemon_dir; /* pid files of daemons we start (default /run/cordon) */
    bool no_start;          /* connect only: never start daemons (a health check) */
};

/* Connects to libvirt. For the local system URI, when no libvirt daemon answers (no systemd on
 * the host), starts virtlogd and libvirtd itself and remembers to stop them. */
int cdn_vm_host_open(const struct cdn_vm_host_opts *opts, struct cdn_vm_host **out, cdn_err **err);
/* Closes the connection (libvirt destroys any domain still running: they autodestroy) and stops
 * the daemons this host started. */
void cdn_vm_host_close(struct cdn_vm_host *h);
void cdn_vm_host_closep(struct cdn_vm_host **h);
bool cdn_vm_host_started_daemons(const struct cdn_vm_host *h);
/* What the host offers: its CPUs and memory (libvirt's node info). */
struct cdn_vm_host_capacity {
    unsigned cpus;
    uint64_t memory_mib;
};
int cdn_vm_host_capacity(struct cdn_vm_host *h, struct cdn_vm_host_capacity *out, cdn_err **err);
/* Whether the host still answers (libvirt's keepalive and a cheap call: blocks while a hung host's
 * keepalive runs out). */
bool cdn_vm_host_alive(struct cdn_vm_host *h);
/* Whether the connection is still up, without a call: a closed socket, or a keepalive that went
 * unanswered (pings every 2 s, 3 missed: ~8 s), has closed it. */
bool cdn_vm_host_connected(struct cdn_vm_host *h);
const char *cdn_vm_host_uri(const struct cdn_vm_host *h);
/* Names of the cordon-* domains this libvirt knows (running or not); caller frees each and the
 * array. */
int cdn_vm_host_list(struct cdn_vm_host *h, char ***names, size_t *n, cdn_err **err);
/* Destroys the running domain of that name, if any (leftovers: see cdn_task_gc). Returns 1 if one
 * was destroyed, 0 if there was none. */
int cdn_vm_host_destroy(struct cdn_vm_host *h, const char *name, cdn_err **err);
/* Whether a running domain of that name exists. */
bool cdn_vm_host_has_domain(struct cdn_vm_host *h, const char *name);

/* The agent's channel: vsock where the host has vhost-vsock (libvirt picks the guest's CID), else
 * a virtio-serial port backed by agent.sock in the task folder. The same frames flow on both. */
enum cdn_vm_transport { CDN_VM_SERIAL, CDN_VM_VSOCK };
#define CDN_VM_VSOCK_PORT 1024u

/* Whether guests can get a vsock device here (/dev/vhost-vsock opens); if not, *why says why. */
bool cdn_vm_vsock_usable(const char **why);

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
    enum cdn_vm_transport transport;
    const char *uuid; /* the domain's UUID; NULL: libvirt makes one (set by cdn_vm_clone) */
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
enum cdn_vm_state { CDN_VM_GONE, CDN_VM_RUNNING, CDN_VM_PAUSED, CDN_VM_OTHER };
enum cdn_vm_state cdn_vm_state(struct cdn_vm *vm);
enum cdn_vm_transport cdn_vm_transport(const struct cdn_vm *vm);
/* Saves the running guest (memory and devices) to path; the domain stops (libvirt's
 * virDomainSaveFlags). cdn_vm_clone brings it back. */
int cdn_vm_save(struct cdn_vm *vm, const char *path, cdn_err **err);
/* Starts a new guest from one saved by cdn_vm_save (a template): its memory and devices, running,
 * in spec's folder (its console and agent socket there), on spec's disk (a copy of the
 * template's: see cdn_vm_disk_copy). Memory, vCPUs, accelerator and transport must be the
 * template's, and the transport serial (a guest keeps its vsock CID). libvirt restores a saved
 * guest under its own name and UUID only (it checks both): the clone is the template's domain
 * cordon-<its id> (spec's id is not used), so one clone of a template runs at a time
 * (cdn_vm_host_has_domain says whether one does). The guest wakes where it was saved: its agent
 * answers a new host on its port (cdn_vm_agent_fd), and its clock and entropy are the template's
 * until the channel's hello hands it the host's. Like a restored guest, a clone is not
 * autodestroyed with the connection: destroy it. */
int cdn_vm_clone(struct cdn_vm_host *h, const char *saved, const struct cdn_vm_spec *spec,
                 struct cdn_vm **out, cdn_err **err);
/* Pauses the guest's vCPUs where they are (libvirt's virDomainSuspend; its memory stays), and
 * lets them run again. The guest's clock stands still meanwhile. */
int cdn_vm_suspend(struct cdn_vm *vm, cdn_err **err);
int cdn_vm_resume(struct cdn_vm *vm, cdn_err **err);
/* Brings back the guest cdn_vm_save saved from vm (same name, folder, disk and devices) into vm,
 * running. Like a clone, the restored guest is not autodestroyed with the connection. */
int cdn_vm_restore(struct cdn_vm *vm, const char *saved, cdn_err **err);
/* Copies a disk (a template's overlay) for a clone; the backing file stays shared. */
int cdn_vm_disk_copy(const char *from, const char *to, cdn_err **err);
/* Destroys the domain if it still exists and removes the agent socket; the console log stays as
 * evidence. Safe in every state, including after the guest powered itself off. */
void cdn_vm_destroy(struct cdn_vm *vm);
void cdn_vm_destroyp(struct cdn_vm **vm);
/* For a host that stopped answering: libvirt's keepalive does not close a connection while a
 * stream runs on it (measured: a frozen host's daemon left a lookup waiting forever), so any call
 * could hang. Frees vm making no call to the host; a channel stream's threads are left waiting
 * on it. The domain is the host's (autodestroyed when the connection drops). NULL is fine. */
void cdn_vm_abandon(struct cdn_vm *vm);
/* Likewise the connection: left open (a close is a call), the rest freed. NULL is fine. */
void cdn_vm_host_abandon(struct cdn_vm_host *h);
/* Guests this process left on a host: abandoned ones, and those whose destroy could not reach
 * their host (its connection had closed). Destroys those of h's URI now (it answers again);
 * returns how many were still there. */
unsigned cdn_vm_host_reap_left(struct cdn_vm_host *h);

/* Which accelerator a guest gets. /dev/kvm existing is not enough (on nested hosts without
 * hardware virtualisation it exists and fails), so KVM is proven by booting a throwaway guest
 * under it, with a deadline; the verdict is cached per host boot (the cache file names the boot
 * id), so only the first task after a reboot pays for the probe. */
struct cdn_vm_accel_opts {
    const char *cache;   /* the verdict's file, e.g. STATE/accel.json */
    const char *scratch; /* a folder the probe may create and remove (its console log) */
    const char *kernel, *initrd;
    int timeout_ms;      /* the probe's deadline (default 15000) */
    bool reprobe;        /* ignore the cached verdict */
    const char *kvm_dev; /* default /dev/kvm (tests name another node to reach the probe) */
};
struct cdn_vm_accel {
    bool kvm;
    bool cached;   /* the verdict came from the cache */
    char why[512]; /* when !kvm: why not */
};
int cdn_vm_accel_choose(struct cdn_vm_host *h, const struct cdn_vm_accel_opts *opts,
                        struct cdn_vm_accel *out, cdn_err **err);

/* One probe boot: domain cordon-probe-<pid> of type kvm (or qemu), whose init writes a marker to
 * its console and powers off. Returns 1 if the guest reached userspace and powered off within
 * timeout_ms, 0 if not (why says what happened), <0 if the probe itself could not run. */
int cdn_vm_probe_boot(struct cdn_vm_host *h, const char *dir, const char *kernel,
                      const char *initrd, bool kvm, int timeout_ms, char *why, size_t why_size,
                      cdn_err **err);
