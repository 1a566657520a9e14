/* SPDX-License-Identifier: Apache-2.0 */
/* `cordon run` as a user runs it: the real binary, real VMs through libvirt. Six boots, each
 * worth its seconds: a result in --json with the exit code passed through, the devbox image, a
 * command timeout, a guest whose agent never answers, Ctrl-C, and SIGKILL followed by `cordon gc`.
 * Afterwards no cordon-* domain, no socket and no overlay may remain. */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "cordon_cli.h"
#include "vmhost.h"

/* Starts `cordon run -- sh -c 'echo started; sleep 120'` and waits until the command runs. */
static pid_t spawn_started(const char *state, const char *name) {
    pid_t pid = th_cordon_spawn(
        "run", state, name, (const char *[]){"--", "sh", "-c", "echo started; sleep 120", NULL});
    uint64_t until = th_now_ms() + 60000;
    for (;;) {
        _cleanup_free_ char *got = th_cordon_output(state, name, "out");
        if (got && strstr(got, "started"))
            return pid;
        if (th_now_ms() > until)
            FAIL("the command never started");
        usleep(50000);
    }
}

/* The test holds the libvirt daemons for its whole length (th_host_hold), so that the cordon
 * it SIGKILLs leaves none behind. */

TEST_T(cordon_run_end_to_end, 300) {
    _cleanup_free_ char *state = th_tmpdir();
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/daemons", state);
    struct cdn_vm_host *host = th_host_hold(daemons);
    /* Exit code, output, env and workdir come back in --json. */
    struct th_ran r =
        th_cordon("run", state, "run",
                  (const char *[]){"--json", "--env", "GREETING=hi", "--workdir", "/tmp", "--",
                                   "sh", "-c", "echo $GREETING; pwd; echo warn >&2; exit 3", NULL});
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
    /* The accelerator and channel it chose, and one line for each fall back. */
    const char *accel = json_string_value(json_object_get(j, "accel"));
    const char *transport = json_string_value(json_object_get(j, "transport"));
    ASSERT_TRUE(accel && transport);
    if (strcmp(accel, "tcg") == 0) {
        ASSERT_CONTAINS(r.err, "cordon: using QEMU TCG (slower): ");
        ASSERT_STREQ(transport, "serial");
    }
    if (strcmp(transport, "serial") == 0)
        ASSERT_CONTAINS(r.err, "cordon: agent channel is virtio-serial: ");
    json_decref(j);
    th_ran_free(&r);

    /* devbox: a Debian root with a toolchain on a per-task overlay, gone with the task. */
    r = th_cordon("run", state, "run",
                  (const char *[]){"--image", "devbox", "--", "sh", "-c",
                                   "git --version && gcc --version | head -n1 && "
                                   "printf 'int main(void){return 5;}' > t.c && gcc -o t t.c "
                                   "&& ./t; echo built=$?",
                                   NULL});
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "git version");
    ASSERT_CONTAINS(r.out, "gcc (Debian");
    ASSERT_CONTAINS(r.out, "built=5");
    th_ran_free(&r);
    th_sh("test -z \"$(find %s/tasks -name disk.qcow2)\"", state);

    /* --timeout kills the command's group in the guest: exit 124 and a message. */
    r = th_cordon(
        "run", state, "run",
        (const char *[]){"--timeout", "1", "--", "sh", "-c", "echo start; sleep 60", NULL});
    ASSERT_EQ(r.code, 124);
    ASSERT_STREQ(r.out, "start\n");
    ASSERT_CONTAINS(r.err, "command timed out after 1 s");
    th_ran_free(&r);

    /* A guest whose agent never answers: exit 125 at the boot deadline, console named. */
    uint64_t t0 = th_now_ms();
    r = th_cordon("run", state, "run",
                  (const char *[]){"--kernel-arg", "cordon.agent=off", "--boot-timeout", "6", "--",
                                   "true", NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "agent did not answer hello within 6000 ms");
    ASSERT_CONTAINS(r.err, "console.log");
    ASSERT_TRUE(th_now_ms() - t0 < 30000);
    th_ran_free(&r);

    /* Ctrl-C while the command runs: exit 130, and the VM is torn down all the same. */
    pid_t pid = spawn_started(state, "bg");
    kill(pid, SIGINT);
    uint64_t t1 = th_now_ms();
    ASSERT_EQ(th_cordon_wait(pid), 130);
    ASSERT_TRUE(th_now_ms() - t1 < 15000);
    _cleanup_free_ char *bg_err = th_cordon_output(state, "bg", "err");
    ASSERT_CONTAINS(bg_err, "interrupted; VM cordon-");
    ASSERT_CONTAINS(bg_err, "destroyed");

    /* SIGKILL: no teardown runs. libvirt destroys the domain when the connection drops
     * (autodestroy); the socket and the owner mark stay until a sweep finds the owner dead. */
    pid = spawn_started(state, "killed");
    kill(pid, SIGKILL);
    th_cordon_wait(pid);
    th_sh("test -n \"$(find %s/tasks -name agent.sock)\"", state);
    th_sh("test -e %s/runs/*/owner", state); /* its own daemon's folder, owned by it */
    /* A dead task with an overlay (its pid long gone), and a live one that must be left alone. */
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, NULL, 0);
    th_sh("mkdir -p %s/tasks/deadtask %s/tasks/livetask && cd %s/tasks/deadtask && "
          "echo '%d 12345' > owner && : > disk.qcow2 && : > agent.sock && echo log > console.log",
          state, state, state, (int)gone);
    th_sh("echo '%d %llu' > %s/tasks/livetask/owner && : > %s/tasks/livetask/agent.sock",
          (int)getpid(), th_proc_start_time(getpid()), state, state);
    pid = th_cordon_spawn("gc", state, "gc", (const char *[]){NULL});
    ASSERT_EQ(th_cordon_wait(pid), 0);
    _cleanup_free_ char *gc_out = th_cordon_output(state, "gc", "out");
    ASSERT_CONTAINS(gc_out, "cordon gc: 2 dead tasks cleaned up");
    ASSERT_CONTAINS(gc_out, "1 dead run folder removed");
    th_sh("test -z \"$(ls %s/runs)\"", state);
    th_sh("cd %s/tasks/deadtask && test ! -e owner && test ! -e disk.qcow2 && test ! -e agent.sock "
          "&& test -e console.log",
          state);
    th_sh("test -e %s/tasks/livetask/owner && test -e %s/tasks/livetask/agent.sock", state, state);
    th_sh("rm -r %s/tasks/livetask", state);

    /* Usage errors are named, and exit 125 without booting anything. */
    r = th_cordon("run", state, "run", (const char *[]){"--memory", "lots", "--", "true", NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "--memory must be a number");
    th_ran_free(&r);
    r = th_cordon("run", state, "run", (const char *[]){"--accel", "hvf", "--", "true", NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "--accel takes auto, kvm or tcg, not 'hvf'");
    th_ran_free(&r);
    if (access("/dev/kvm", F_OK) < 0) { /* asked for, KVM is not silently replaced */
        r = th_cordon("run", state, "run", (const char *[]){"--accel", "kvm", "--", "true", NULL});
        ASSERT_EQ(r.code, 125);
        ASSERT_CONTAINS(r.err, "KVM was asked for but cannot run guests here: /dev/kvm is absent");
        th_ran_free(&r);
    }

    /* Nothing left: no domain, no agent socket in any task folder. */
    th_assert_no_cordon_domains(host);
    th_host_release();
    th_sh("test -z \"$(find %s/tasks -name agent.sock)\"", state);
    th_rmtree(state);
}
