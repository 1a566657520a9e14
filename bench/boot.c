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

static double raw_qemu_to_hello_s(bool kvm) {
    struct th_vm vm;
    double t0 = th_now_s();
    th_vm_boot_accel(&vm, NULL, kvm);
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

struct run_times {
    double total_s, create_s, boot_s;
    bool kvm;
};

/* `cordon run --json -- true`, timed from outside; its own report splits out libvirt's domain
 * creation and the boot to the agent's hello. */
static struct run_times cordon_run_true(const char *cordon, const char *state, const char *accel) {
    int p[2];
    if (pipe(p) < 0)
        FAIL("pipe");
    double t0 = th_now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        dup2(p[1], 1);
        dup2(devnull, 2);
        execl(cordon, cordon, "run", "--json", "--accel", accel, "--state", state, "--images",
              th_images_dir(), "--", "true", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char out[8192];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(out) - 1 && (n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    struct run_times t = {.total_s = th_now_s() - t0};
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("cordon run -- true exited with status %d", status);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    if (!o)
        FAIL("cordon run --json printed no JSON (%s): %s", je.text, out);
    t.create_s = (double)json_integer_value(json_object_get(o, "create_ms")) / 1000;
    t.boot_s = (double)json_integer_value(json_object_get(o, "boot_ms")) / 1000;
    const char *used = json_string_value(json_object_get(o, "accel"));
    t.kvm = used && strcmp(used, "kvm") == 0;
    json_decref(o);
    return t;
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

struct series {
    double raw_s, run_s, create_s, boot_s;
};

/* RUNS of each, interleaved so that drift hits both alike. */
static struct series measure(const char *cordon, const char *state, bool kvm) {
    double raw[RUNS], run[RUNS], create[RUNS], boot[RUNS];
    for (int i = 0; i < RUNS; i++) {
        raw[i] = raw_qemu_to_hello_s(kvm);
        struct run_times t = cordon_run_true(cordon, state, kvm ? "kvm" : "tcg");
        run[i] = t.total_s;
        create[i] = t.create_s;
        boot[i] = t.boot_s;
    }
    return (struct series){th_median(raw, RUNS), th_median(run, RUNS), th_median(create, RUNS),
                           th_median(boot, RUNS)};
}

static void report(const char *accel, const struct series *m, json_t *all) {
    printf("  %s:\n", accel);
    printf("    (a) raw qemu boot to agent hello   %6.0f ms\n", m->raw_s * 1000);
    printf("    (b) cordon run -- true, end to end %6.0f ms   (b)/(a) = %.2f  (goal <= 1.2)\n",
           m->run_s * 1000, m->run_s / m->raw_s);
    printf("        of which libvirt creating the domain (QEMU paused) %.0f ms; creation to hello "
           "%.0f ms\n",
           m->create_s * 1000, m->boot_s * 1000);
    json_t *o = json_object();
    json_object_set_new(o, "raw_qemu_to_hello_ms", json_real(m->raw_s * 1000));
    json_object_set_new(o, "cordon_run_true_ms", json_real(m->run_s * 1000));
    json_object_set_new(o, "ratio", json_real(m->run_s / m->raw_s));
    json_object_set_new(o, "libvirt_create_ms", json_real(m->create_s * 1000));
    json_object_set_new(o, "create_to_hello_ms", json_real(m->boot_s * 1000));
    json_object_set_new(all, accel, o);
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

    /* What cordon chooses by itself (this run also pays for the KVM probe, if any). */
    struct run_times first = cordon_run_true(cordon, state, "auto");
    struct series tcg = measure(cordon, state, false), kvm = {0};
    if (first.kvm)
        kvm = measure(cordon, state, true);
    double reap[5];
    for (int i = 0; i < 5; i++)
        reap[i] = orphan_reap_s();
    double reap_s = th_median(reap, 5);
    cdn_vm_host_close(host);

    json_t *root = json_object(), *series = json_object();
    printf("boot benchmark: medians of %d runs, minimal image\n", RUNS);
    if (first.kvm)
        report("kvm", &kvm, series);
    else
        printf("  kvm: not usable on this host (cordon chose TCG; see `cordon run` notice)\n");
    report("tcg", &tcg, series);
    printf("  this machine's PID 1 reaps an orphan after %.0f ms; libvirt's destroy waits until "
           "QEMU is reaped: %s\n",
           reap_s * 1000,
           daemon_start > 0 ? "cordon started libvirtd under its own reaper, so (b) does not pay it"
                            : "libvirtd was already running, so (b) pays it on every teardown");
    if (daemon_start > 0)
        printf("  starting libvirtd + virtlogd once  %6.0f ms (not in (b))\n", daemon_start * 1000);

    struct utsname u;
    uname(&u);
    const struct series *main_series = first.kvm ? &kvm : &tcg;
    json_object_set_new(root, "benchmark", json_string("boot"));
    json_object_set_new(root, "host", json_string(u.release));
    json_object_set_new(root, "accel", json_string(first.kvm ? "kvm" : "tcg"));
    json_object_set_new(root, "kvm_usable", json_boolean(first.kvm));
    json_object_set_new(root, "runs", json_integer(RUNS));
    json_object_set_new(root, "ratio", json_real(main_series->run_s / main_series->raw_s));
    json_object_set_new(root, "ratio_means",
                        json_string("cordon run / raw qemu boot with the accelerator cordon "
                                    "chose, lower is better; goal <= 1.2"));
    json_object_set_new(root, "series", series);
    json_object_set_new(root, "daemon_start_ms", json_real(daemon_start * 1000));
    json_object_set_new(root, "pid1_orphan_reap_ms", json_real(reap_s * 1000));
    if (json_dump_file(root, out_path, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
        FAIL("writing %s", out_path);
    json_decref(root);
    printf("  written to %s\n", out_path);
    th_rmtree(state);
    return 0;
}
