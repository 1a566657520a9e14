/* SPDX-License-Identifier: Apache-2.0 */
/* Running a short-lived helper program (qemu-img, a daemon that forks away) to completion
 * (internal to cdn_vm). */
#pragma once

#include "err.h"

/* Runs argv[0] (looked up in PATH) with stdio on /dev/null and waits for it. Returns its exit
 * status (0-255; 127 if it could not be executed, 128 + signal if killed), or -errno if it could
 * not be started. */
int vm_run(const char *const argv[], cdn_err **err);
