/* SPDX-License-Identifier: Apache-2.0 */
/* Test and benchmark helper: a cordond of the build under test, on a socket in a folder. */
#pragma once

#include <sys/types.h>

/* Starts cordond (next to $CORDON_AGENT) with its state in DIR/daemon and its log in
 * DIR/cordond.log, `--socket sock --images IMAGES --policies policies --accel accel`, then the
 * NULL-terminated extra flags; waits until it answers (fails the caller if it does not). */
pid_t th_cordond_start(const char *dir, const char *sock, const char *accel,
                       const char *const *extra);
/* SIGTERM, and waits for it. */
void th_cordond_stop(pid_t pid);
/* A field of /proc/PID/status in KiB (VmRSS, VmHWM), -1 if unknown. */
long th_proc_status_kib(pid_t pid, const char *field);
