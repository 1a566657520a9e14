/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_vm disks: a task's qcow2 overlay on the read-only base image, so every task starts from the
 * same root and writes only to its own file (deleted with the task). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "vm.h"

int cdn_vm_overlay_create(const char *base, const char *path, cdn_err **err) {
    _cleanup_free_ char *abs = realpath(base, NULL);
    if (!abs)
        return cdn_err_set(err, errno, "base image %s: %m (run `make images`)", base);
    pid_t pid = fork();
    if (pid < 0)
        return cdn_err_set(err, errno, "fork: %m");
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(devnull, 0);
        dup2(devnull, 1);
        execlp("qemu-img", "qemu-img", "create", "-q", "-f", "qcow2", "-b", abs, "-F", "qcow2",
               path, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cdn_err_set(err, EIO, "qemu-img create of overlay %s on %s failed (status %d)", path,
                           abs, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
