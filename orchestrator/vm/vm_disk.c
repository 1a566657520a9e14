/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_vm disks: a task's qcow2 overlay on the read-only base image, so every task starts from the
 * same root and writes only to its own file (deleted with the task). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "vm.h"
#include "vm_run.h"

int cdn_vm_overlay_create(const char *base, const char *path, cdn_err **err) {
    _cleanup_free_ char *abs = realpath(base, NULL);
    if (!abs)
        return cdn_err_set(err, errno, "base image %s: %m (run `make images`)", base);
    const char *argv[] = {"qemu-img", "create", "-q",    "-f", "qcow2", "-b",
                          abs,        "-F",     "qcow2", path, NULL};
    int status = vm_run(argv, err);
    if (status < 0)
        return status;
    if (status != 0)
        return cdn_err_set(err, EIO, "qemu-img create of overlay %s on %s failed (status %d)", path,
                           abs, status);
    return 0;
}

int cdn_vm_disk_copy(const char *from, const char *to, cdn_err **err) {
    _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return cdn_err_set(err, errno, "disk %s: %m", from);
    _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0)
        return cdn_err_set(err, errno, "disk %s: %m", to);
    /* In the kernel, and a reflink where the filesystem shares extents. */
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EINTR) {
            int e = errno;
            unlink(to);
            return cdn_err_set(err, e, "copying disk %s to %s: %s", from, to, strerror(e));
        }
    }
}
