/* SPDX-License-Identifier: Apache-2.0 */
#include "cordond.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "qemu.h"
#include "test.h"

pid_t th_cordond_start(const char *dir, const char *sock, const char *accel,
                       const char *const *extra) {
    char bin[4200], state[4300], log[4300];
    snprintf(bin, sizeof(bin), "%s", th_agent_path());
    snprintf(strrchr(bin, '/') + 1, 64, "cordond");
    snprintf(state, sizeof(state), "%s/daemon", dir);
    snprintf(log, sizeof(log), "%s/cordond.log", dir);
    if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        FAIL("socket path too long: %s", sock);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        const char *argv[48] = {bin,        "--socket",      sock,         "--state",  state,
                                "--images", th_images_dir(), "--policies", "policies", "--accel",
                                accel};
        size_t n = 11;
        for (size_t i = 0; extra && extra[i] && n < 47; i++)
            argv[n++] = extra[i];
        execv(bin, (char **)argv);
        _exit(127);
    }
    for (int i = 0; i < 600 && !th_unix_answers(sock); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            FAIL("cordond exited: %s", th_read_file(log));
        usleep(50000);
    }
    if (!th_unix_answers(sock))
        FAIL("cordond does not answer on %s", sock);
    return pid;
}

void th_cordond_stop(pid_t pid) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

long th_proc_status_kib(pid_t pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long kib = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kib = strtol(line + n + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return kib;
}
