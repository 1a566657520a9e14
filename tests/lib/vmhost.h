/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: the libvirt host a VM test holds for its whole length. */
#pragma once

#include "vm.h"

/* Opens the host (starting the daemons, pid files under daemon_dir, when none answer) and
 * registers its closing at exit, so a failing assertion still stops what the test started. */
struct cdn_vm_host *th_host_hold(const char *daemon_dir);
/* Closes it now (stopping the daemons it started); safe to call twice. */
void th_host_release(void);
/* The agent's channel of vm, its hello answered (fails the test if not within a minute). */
struct cdn_channel *th_vm_agent(struct cdn_vm *vm);
/* Fails the test if any cordon-* domain exists on h. */
void th_assert_no_cordon_domains(struct cdn_vm_host *h);
