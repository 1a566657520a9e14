/* SPDX-License-Identifier: Apache-2.0 */
/* `cordon run` as a user runs it: the real binary, real VMs through libvirt. Five boots, each
 * worth its seconds: a result in --json with the exit code passed through, the devbox image, a
 * command timeout, a guest whose agent never answers, and Ctrl-C. Afterwards no cordon-* domain,
 * no socket and no overlay may remain. */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "vm.h"

struct ran {
    int code;
    char *out, *err;
};

/* Starts the cordon binary next to the agent under test (`cordon run --state STATE --images ...
 * ARGS`), its stdout and stderr going to STATE/NAME.out and STATE/NAME.err. */
static pid_t spawn_cordon(const char *state, const char *name, const char *const *args) {
    char bin[4200], out_path[4300], err_path[4300];
    snprintf(bin, sizeof(bin), "%s", th_agent_path());
    snprintf(strrchr(bin, '/') + 1, 64, "cordon");
    snprintf(out_path, sizeof(out_path), "%s/%s.out", state, name);
    snprintf(err_path, sizeof(err_path), "%s/%s.err", state, name);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        const char *argv[32] = {bin, "run", "--state", state, "--images", th_images_dir()};
        size_t n = 6;
        for (size_t i = 0; args[i] && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(bin, (char **)argv);
        _exit(127);
    }
    return pid;
}

static char *read_output(const char *state, const char *name, const char *ext) {
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s.%s", state, name, ext);
    return th_read_file(path);
}

/* Runs cordon to completion. */
static struct ran cordon(const char *state, const char *const *args) {
    pid_t pid = spawn_cordon(state, "run", args);
    int status;
    waitpid(pid, &status, 0);
    return (struct ran){.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                        .out = read_output(state, "run", "out"),
                        .err = read_output(state, "run", "err")};
}

static void ran_free(struct ran *r) {
    free(r->out);
    free(r->err);
}

TEST_T(cordon_run_end_to_end, 300) {
    _cleanup_free_ char *state = th_tmpdir();
    /* Exit code, output, env and workdir come back in --json. */
    struct ran r = cordon(
        state, (const char *[]){"--json", "--env", "GREETING=hi", "--workdir", "/tmp", "--", "sh",
                                "-c", "echo $GREETING; pwd; echo warn >&2; exit 3", NULL});
    ASSERT_EQ(r.code, 3);
    json_error_t jerr;
    json_t *j = json_loads(r.out, 0, &jerr);
    if (!j)
        FAIL("not JSON (%s): %s / %s", jerr.text, r.out, r.err);
    ASSERT_EQ(json_integer_value(json_object_get(j, "exit_code")), 3);
    ASSERT_STREQ(json_string_value(json_object_get(j, "stdout")), "hi\n/tmp\n");
    ASSERT_STREQ(json_string_value(json_object_get(j, "stderr")), "warn\n");
    ASSERT_TRUE(json_integer_value(json_object_get(j, "boot_ms")) > 0);
    const char *console = json_string_value(json_object_get(j, "console_log"));
    ASSERT_TRUE(console && access(console, F_OK) == 0); /* kept as evidence */
    json_decref(j);
    ASSERT_CONTAINS(r.err, "using QEMU TCG");
    ran_free(&r);

    /* devbox: a Debian root with a toolchain on a per-task overlay, gone with the task. */
    r = cordon(state, (const char *[]){"--image", "devbox", "--", "sh", "-c",
                                       "git --version && gcc --version | head -n1 && "
                                       "printf 'int main(void){return 5;}' > t.c && gcc -o t t.c "
                                       "&& ./t; echo built=$?",
                                       NULL});
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "git version");
    ASSERT_CONTAINS(r.out, "gcc (Debian");
    ASSERT_CONTAINS(r.out, "built=5");
    ran_free(&r);
    th_sh("test -z \"$(find %s/tasks -name disk.qcow2)\"", state);

    /* --timeout kills the command's group in the guest: exit 124 and a message. */
    r = cordon(state,
               (const char *[]){"--timeout", "1", "--", "sh", "-c", "echo start; sleep 60", NULL});
    ASSERT_EQ(r.code, 124);
    ASSERT_STREQ(r.out, "start\n");
    ASSERT_CONTAINS(r.err, "command timed out after 1 s");
    ran_free(&r);

    /* A guest whose agent never answers: exit 125 at the boot deadline, console named. */
    uint64_t t0 = th_now_ms();
    r = cordon(state, (const char *[]){"--kernel-arg", "cordon.agent=off", "--boot-timeout", "6",
                                       "--", "true", NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "agent did not answer hello within 6000 ms");
    ASSERT_CONTAINS(r.err, "console.log");
    ASSERT_TRUE(th_now_ms() - t0 < 30000);
    ran_free(&r);

    /* Ctrl-C while the command runs: exit 130, and the VM is torn down all the same. */
    pid_t pid = spawn_cordon(state, "bg",
                             (const char *[]){"--", "sh", "-c", "echo started; sleep 120", NULL});
    uint64_t until = th_now_ms() + 60000;
    for (;;) {
        _cleanup_free_ char *got = read_output(state, "bg", "out");
        if (got && strstr(got, "started"))
            break;
        if (th_now_ms() > until)
            FAIL("the command never started");
        usleep(50000);
    }
    kill(pid, SIGINT);
    uint64_t t1 = th_now_ms();
    int status;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 130);
    ASSERT_TRUE(th_now_ms() - t1 < 15000);
    _cleanup_free_ char *bg_err = read_output(state, "bg", "err");
    ASSERT_CONTAINS(bg_err, "interrupted; VM cordon-");
    ASSERT_CONTAINS(bg_err, "destroyed");

    /* Usage errors are named, and exit 125 without booting anything. */
    r = cordon(state, (const char *[]){"--memory", "lots", "--", "true", NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "--memory must be a number");
    ran_free(&r);

    /* Nothing left: no domain, no agent socket in any task folder. */
    struct cdn_vm_host *h = NULL;
    cdn_err *err = NULL;
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", state);
    struct cdn_vm_host_opts hopts = {.daemon_dir = daemons};
    ASSERT_OK(cdn_vm_host_open(&hopts, &h, &err), err);
    char **names = NULL;
    size_t n = 0;
    ASSERT_OK(cdn_vm_host_list(h, &names, &n, &err), err);
    for (size_t i = 0; i < n; i++)
        FAIL("leftover domain %s", names[i]);
    free(names);
    cdn_vm_host_close(h);
    th_sh("test -z \"$(find %s/tasks -name agent.sock)\"", state);
    th_rmtree(state);
}
