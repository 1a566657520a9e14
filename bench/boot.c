/* SPDX-License-Identifier: Apache-2.0 */
/* bench/boot: how close `cordon run -- true` comes to the fastest way to boot the same guest.
 * Medians over RUNS runs, in one process run:
 *   (a) raw qemu-system-x86_64, direct kernel boot of the same kernel + minimal initramfs, until
 *       the agent's Hello arrives over virtio-serial;
 *   (b) `cordon run -- true` end to end (libvirt domain, boot, hello, exec, shutdown, teardown),
 *       with the libvirt daemons already running, as under cordond;
 *   and, once, what starting the daemons costs when none runs.
 * Writes bench/results/boot.json. */
#include <fcntl.h>
#include <jansson.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "vm.h"

#define RUNS 7

static double raw_qemu_to_hello_s(void) {
    struct th_vm vm;
    double t0 = th_now_s();
    th_vm_boot(&vm, NULL);
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(th_vm_channel(&vm, 60000, &ch, &err), err);
    double t = th_now_s() - t0;
    cdn_channel_shutdown(ch, true, 5000, NULL);
    cdn_channel_free(ch);
    th_vm_wait_exit(&vm, 10000);
    th_vm_destroy(&vm);
    return t;
}

static double cordon_run_true_s(const char *cordon, const char *state) {
    double t0 = th_now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(cordon, cordon, "run", "--state", state, "--images", th_images_dir(), "--", "true",
              (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("cordon run -- true exited with status %d", status);
    return th_now_s() - t0;
}

/* How long this machine's PID 1 takes to reap an orphan: libvirt's destroy waits until QEMU (an
 * orphan: libvirt daemonises it) is gone, so a slow init adds its delay to every teardown. */
static double orphan_reap_s(void) {
    int pfd[2];
    if (pipe(pfd) < 0)
        FAIL("pipe");
    pid_t child = fork();
    if (child == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            usleep(50000);
            _exit(0);
        }
        ssize_t w = write(pfd[1], &grandchild, sizeof(grandchild));
        (void)w;
        _exit(0);
    }
    pid_t orphan = 0;
    if (read(pfd[0], &orphan, sizeof(orphan)) != (ssize_t)sizeof(orphan))
        FAIL("read");
    waitpid(child, NULL, 0);
    close(pfd[0]);
    close(pfd[1]);
    double t0 = th_now_s();
    usleep(50000); /* its own run time */
    while (kill(orphan, 0) == 0 && th_now_s() - t0 < 10)
        usleep(2000);
    return th_now_s() - t0 - 0.05;
}

static bool accel_kvm(void) {
    const char *why;
    return cdn_vm_kvm_usable(&why);
}

int main(void) {
    const char *out_path = getenv("BENCH_OUT") ? getenv("BENCH_OUT") : "bench/results/boot.json";
    char cordon[4200];
    snprintf(cordon, sizeof(cordon), "%s", th_agent_path());
    snprintf(strrchr(cordon, '/') + 1, 64, "cordon");
    _cleanup_free_ char *state = th_tmpdir();
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", state);

    /* The daemons' own start-up, measured once, then kept running for (b). */
    double d0 = th_now_s();
    struct cdn_vm_host_opts hopts = {.daemon_dir = daemons};
    struct cdn_vm_host *host = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_vm_host_open(&hopts, &host, &err), err);
    double daemon_start = cdn_vm_host_started_daemons(host) ? th_now_s() - d0 : 0;

    double raw[RUNS], run[RUNS];
    for (int i = 0; i < RUNS; i++) { /* interleaved, so drift hits both alike */
        raw[i] = raw_qemu_to_hello_s();
        run[i] = cordon_run_true_s(cordon, state);
    }
    double a = th_median(raw, RUNS), b = th_median(run, RUNS);
    double reap[5];
    for (int i = 0; i < 5; i++)
        reap[i] = orphan_reap_s();
    double reap_s = th_median(reap, 5);
    cdn_vm_host_close(host);

    const char *accel = accel_kvm() ? "kvm" : "tcg";
    printf("boot benchmark: medians of %d runs, accel %s, minimal image\n", RUNS, accel);
    printf("  (a) raw qemu boot to agent hello   %6.0f ms\n", a * 1000);
    printf("  (b) cordon run -- true, end to end %6.0f ms   (b)/(a) = %.2f  (goal <= 1.2)\n",
           b * 1000, b / a);
    printf("  this machine's PID 1 reaps an orphan after %.0f ms; libvirt's destroy waits for QEMU "
           "(an orphan) to be reaped, so teardown pays it\n",
           reap_s * 1000);
    if (daemon_start > 0)
        printf("  starting libvirtd + virtlogd once  %6.0f ms (not in (b))\n", daemon_start * 1000);

    json_t *root = json_object();
    struct utsname u;
    uname(&u);
    json_object_set_new(root, "benchmark", json_string("boot"));
    json_object_set_new(root, "host", json_string(u.release));
    json_object_set_new(root, "accel", json_string(accel));
    json_object_set_new(root, "runs", json_integer(RUNS));
    json_object_set_new(root, "raw_qemu_to_hello_ms", json_real(a * 1000));
    json_object_set_new(root, "cordon_run_true_ms", json_real(b * 1000));
    json_object_set_new(root, "ratio", json_real(b / a));
    json_object_set_new(root, "ratio_means",
                        json_string("cordon run / raw qemu boot, lower is "
                                    "better; goal <= 1.2"));
    json_object_set_new(root, "daemon_start_ms", json_real(daemon_start * 1000));
    json_object_set_new(root, "pid1_orphan_reap_ms", json_real(reap_s * 1000));
    if (json_dump_file(root, out_path, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
        FAIL("writing %s", out_path);
    json_decref(root);
    printf("  written to %s\n", out_path);
    th_rmtree(state);
    return 0;
}
