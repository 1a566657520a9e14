/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: a second libvirt host on this machine. Its libvirtd and virtlogd run in a mount
 * namespace of their own (private /run/libvirt, /var/lib/libvirt, ...: two privileged daemons
 * would otherwise share their state), reached over TCP on loopback like a host on another
 * machine: qemu+tcp://127.0.0.1:PORT/system. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

struct th_host2 {
    char dir[4096];
    char uri[4300];
    pid_t pid;   /* libvirtd (the namespace's first process) */
    char ns[64]; /* its mount namespace, as /proc/PID/ns/mnt reads */
};

/* Starts the host's daemons (its files under dir), waiting until libvirtd answers. */
void th_host2_start(struct th_host2 *h, const char *dir);
/* The host goes away at once: every process of its namespace (libvirtd, virtlogd, its QEMUs)
 * killed with SIGKILL. Returns how many were killed. */
int th_host2_kill(struct th_host2 *h);
/* The host stops answering without going away (a hung daemon, a partitioned network): every
 * process of its namespace stopped with SIGSTOP (th_host2_kill still ends them). */
int th_host2_freeze(struct th_host2 *h);
/* And it answers again (SIGCONT): what was frozen carries on where it stopped. */
int th_host2_thaw(struct th_host2 *h);
/* The processes of its namespace now (QEMUs included). */
int th_host2_count(const struct th_host2 *h);
/* Its QEMUs running cordon guests now (not libvirt's capability probes). */
int th_host2_guests(const struct th_host2 *h);
