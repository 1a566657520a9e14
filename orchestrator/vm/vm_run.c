/* SPDX-License-Identifier: Apache-2.0 */
/* vm_run: one place that forks a helper, silences its stdio and reaps it. */
#include "vm_run.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

int vm_run(const char *const argv[], cdn_err **err) {
    pid_t pid = fork();
    if (pid < 0)
        return cdn_err_set(err, errno, "fork: %m");
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cdn_err_set(err, errno, "waiting for %s: %m", argv[0]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
