/* SPDX-License-Identifier: Apache-2.0 */
/* Starting and stopping the local libvirt daemons where nothing else does (internal to cdn_vm). */
#pragma once

#include <stdbool.h>

#include "err.h"

struct vm_daemons {
    const char *driver; /* "libvirtd" or "virtqemud" when we started it, else NULL */
    bool started_virtlogd;
    char *dir; /* pid files */
};

/* Makes sure virtlogd and a QEMU driver daemon (libvirtd, else virtqemud) answer on their sockets
 * in /run/libvirt; starts the ones that do not (daemonised under a reaping supervisor, pid files
 * in dir) and waits for them, at most timeout_ms. */
int vm_daemons_ensure(struct vm_daemons *d, const char *dir, int timeout_ms, cdn_err **err);
/* Stops, by pid, the daemons vm_daemons_ensure started; waits for them to go. */
void vm_daemons_stop(struct vm_daemons *d);
