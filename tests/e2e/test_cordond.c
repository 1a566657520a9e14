/* SPDX-License-Identifier: Apache-2.0 */
/* cordond end to end, driven by a client cordon did not write (Python's grpcio, stubs generated
 * from proto/cordon.proto here): a sandbox on a real repository through every RPC, another
 * tenant (uid 65534) shut out, every error code, 200 concurrent Exec streams across 10
 * sandboxes with the daemon's memory bounded, and kill -9 with a restart. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "cordon_cli.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

struct env {
    char *dir;
    char state[4200], sock[4200], repo[4200], stubs[4200], script[4200];
    pid_t daemon;
};

static void setup(struct env *e) {
    e->dir = th_tmpdir();
    chmod(e->dir, 0755); /* the other tenant's client reads the stubs */
    snprintf(e->state, sizeof(e->state), "%s/state", e->dir);
    snprintf(e->sock, sizeof(e->sock), "%s/cordond.sock", e->dir);
    snprintf(e->repo, sizeof(e->repo), "%s/repo", e->dir);
    snprintf(e->stubs, sizeof(e->stubs), "%s/stubs", e->dir);
    char root[4096];
    if (!getcwd(root, sizeof(root)))
        FAIL("getcwd");
    snprintf(e->script, sizeof(e->script), "%s/tests/e2e/api_client.py", root);
    th_sh("mkdir -p %s && /usr/bin/python3 -m grpc_tools.protoc -I%s/proto --python_out=%s "
          "--grpc_python_out=%s %s/proto/cordon.proto && chmod -R a+rX %s",
          e->stubs, root, e->stubs, e->stubs, root, e->stubs);
    setenv("CORDON_PY_STUBS", e->stubs, 1);
    th_sh("git init -q -b main %s && cd %s && printf 'one\\ntwo\\n' > README && git add . && "
          "git -c user.name=t -c user.email=t@t commit -qm init",
          e->repo, e->repo);
}

static bool answers(const char *sock) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static void daemon_start(struct env *e, const char *max_running) {
    char bin[4200];
    snprintf(bin, sizeof(bin), "%s", th_cordon_bin());
    strcat(bin, "d"); /* cordond, next to cordon */
    char log[4300];
    snprintf(log, sizeof(log), "%s/cordond.log", e->dir);
    e->daemon = fork();
    if (e->daemon == 0) {
        /* ASan's quarantine (256 MiB by default) would hide what cordond itself holds. */
        const char *asan = getenv("ASAN_OPTIONS");
        if (asan) {
            char opts[1024];
            snprintf(opts, sizeof(opts), "%s:quarantine_size_mb=16", asan);
            setenv("ASAN_OPTIONS", opts, 1);
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, bin, "--socket", e->sock, "--socket-mode", "0666", "--state", e->state,
              "--images", getenv("CORDON_IMAGES"), "--policies", "policies", "--accel", "tcg",
              "--max-running", max_running, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 600 && !answers(e->sock); i++) {
        int status;
        if (waitpid(e->daemon, &status, WNOHANG) == e->daemon)
            FAIL("%s exited (status %d): %s", bin, status, th_read_file(log));
        usleep(50000);
    }
    if (!answers(e->sock))
        FAIL("cordond does not answer on %s", e->sock);
}

/* SIGTERM: it stops its sandboxes and exits 0 (under ASan: without leaks). */
static void daemon_stop(struct env *e) {
    kill(e->daemon, SIGTERM);
    int status = -1;
    for (int i = 0; i < 1200 && waitpid(e->daemon, &status, WNOHANG) == 0; i++)
        usleep(50000);
    char log[4300];
    snprintf(log, sizeof(log), "%s/cordond.log", e->dir);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("cordond did not stop cleanly (status %d): %s", status, th_read_file(log));
}

static long daemon_hwm_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* Runs a scenario of api_client.py (as uid when not 0); its lines go to the test's log. */
static int py(struct env *e, unsigned uid, const char *const *args) {
    pid_t pid = fork();
    if (pid == 0) {
        if (uid && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
            _exit(126);
        const char *argv[16] = {"/usr/bin/python3", e->script};
        for (size_t i = 0; args[i] && i < 12; i++)
            argv[2 + i] = args[i];
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    fflush(stdout);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void teardown(struct env *e, struct cdn_vm_host *h) {
    th_assert_no_cordon_domains(h);
    th_rmtree(e->dir);
    free(e->dir);
}

TEST_T(a_python_grpc_client_drives_sandboxes_and_tenants_are_kept_apart, 600) {
    struct env e = {0};
    setup(&e);
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e.dir);
    struct cdn_vm_host *h = th_host_hold(daemons);
    daemon_start(&e, "4");
    char idf[4300];
    snprintf(idf, sizeof(idf), "%s/id", e.dir);
    ASSERT_EQ(py(&e, 0, (const char *[]){"interop", e.sock, e.repo, idf, NULL}), 0);
    _cleanup_free_ char *id = th_read_file(idf);
    ASSERT_EQ(strlen(id), 16);
    ASSERT_EQ(py(&e, 65534, (const char *[]){"other-tenant", e.sock, id, NULL}), 0);
    ASSERT_EQ(py(&e, 0, (const char *[]){"delete", e.sock, id, NULL}), 0);
    ASSERT_EQ(py(&e, 0, (const char *[]){"errors", e.sock, NULL}), 0);
    daemon_stop(&e);
    teardown(&e, h);
}

TEST_T(two_hundred_concurrent_exec_streams_keep_the_daemon_small, 600) {
    struct env e = {0};
    setup(&e);
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e.dir);
    struct cdn_vm_host *h = th_host_hold(daemons);
    daemon_start(&e, "10");
    long before = daemon_hwm_kib(e.daemon);
    ASSERT_EQ(py(&e, 0, (const char *[]){"concurrency", e.sock, "10", "200", NULL}), 0);
    long peak = daemon_hwm_kib(e.daemon);
    printf("  cordond peak RSS %ld KiB (%ld KiB at start) over 200 streams\n", peak, before);
    /* 200 streams of ~20 KB each, 10 VMs' channels: well under 192 MiB more, sanitizers on. */
    ASSERT_LE(peak - before, 192 * 1024);
    daemon_stop(&e);
    teardown(&e, h);
}

TEST_T(kill_9_and_a_restart_lose_nothing_acknowledged, 600) {
    struct env e = {0};
    setup(&e);
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e.dir);
    struct cdn_vm_host *h = th_host_hold(daemons);
    daemon_start(&e, "1");
    char idf[4300];
    snprintf(idf, sizeof(idf), "%s/ids", e.dir);
    ASSERT_EQ(py(&e, 0, (const char *[]){"restart-before", e.sock, idf, NULL}), 0);
    _cleanup_free_ char *ids = th_read_file(idf);
    char a[17], b[17];
    ASSERT_EQ(sscanf(ids, "%16s %16s", a, b), 2);
    kill(e.daemon, SIGKILL);
    waitpid(e.daemon, NULL, 0);
    daemon_start(&e, "1");
    ASSERT_EQ(py(&e, 0, (const char *[]){"restart-after", e.sock, a, b, NULL}), 0);
    daemon_stop(&e);
    teardown(&e, h);
}
