/* SPDX-License-Identifier: Apache-2.0 */
/* bench/warm: how fast a sandbox can start. Medians over RUNS runs, in one process run:
 *   (a) warm: cordond with a warm pool of one minimal VM (refilled between runs): CreateSandbox,
 *       then Exec `true` until its exit; the warm start is that less a second `true`'s round
 *       trip in the same sandbox (goal <= 50 ms);
 *   (b) cold: the same through the same cordond for a sandbox the pool cannot serve (an extra
 *       kernel argument): its VM boots;
 *   (c) the pool's refill, from cordond's log: a warm VM cloned from the pool's saved template
 *       against the template's own cold boot, each to its agent's hello;
 *   (d) libvirt save of a booted idle guest (virDomainSaveFlags) and a clone of it under a new
 *       name (cdn_vm_clone: virDomainRestoreFlags with new XML) against the cold boot, each to
 *       its agent's answer and an exec of `true`: whether restoring beats booting here.
 * Writes bench/results/warm.json. */
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_client.h"
#include "bench.h"
#include "cleanup.h"
#include "cordon.pb-c.h"
#include "cordond.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "vm.h"
#include "vmhost.h"

#define RUNS 5
#define GOAL_MS 50.0

static const char allow_all[] = "version: 1\ncommands:\n  default: allow\n";

/* A sandbox created and its first `true` done: ms; *again the second `true`'s ms. */
static double start_ms(struct cdn_client *c, bool cold, double *again) {
    Cordon__V1__CreateSandboxRequest q = CORDON__V1__CREATE_SANDBOX_REQUEST__INIT;
    q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
    q.policy_text = (char *)allow_all;
    char *kargs[] = {(char *)"cordon.bench=cold"};
    if (cold) {
        q.kernel_args = kargs;
        q.n_kernel_args = 1;
    }
    char id[17];
    double ms = th_bench_start(c, &q.base, id);
    double t0 = th_now_s();
    th_bench_exec_true(c, id, 180000);
    *again = (th_now_s() - t0) * 1e3;
    th_bench_delete(c, id);
    return ms;
}

static void wait_ready(const char *log, unsigned times) {
    for (int i = 0; i < 1800 && th_log_count(log, "warm pool minimal: 1 of 1 ready") < times; i++)
        usleep(100000);
    if (th_log_count(log, "warm pool minimal: 1 of 1 ready") < times)
        FAIL("the warm pool did not fill (%s)", log);
}

/* The pool's own figures from cordond's log: the median of the ms after "the last <how> in". */
static double pool_ms(const char *log, const char *how, unsigned *n) {
    _cleanup_free_ char *text = th_read_file(log);
    char needle[64];
    snprintf(needle, sizeof(needle), "the last %s in ", how);
    double v[256];
    *n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) && *n < 256; p++)
        v[(*n)++] = strtod(p + strlen(needle), NULL);
    return *n ? th_median(v, *n) : 0;
}

/* ---- (c) a template and its clones ---- */

static double exec_ms(struct cdn_channel *ch) {
    struct th_output o = {0};
    double t0 = th_now_s();
    struct cdn_exec_result r = th_run(ch, &o, (const char *const[]){"true", NULL});
    ASSERT_EQ(r.exit_code, 0);
    th_output_free(&o);
    return (th_now_s() - t0) * 1e3;
}

/* Per run: a guest booted cold to its first exec, saved while connected, then a clone of it
 * (another name, folder and socket: cdn_vm_clone, what the warm pool does) to its first exec. */
static void save_clone(const char *dir, struct cdn_vm_host *h, double *cold, double *save,
                       double *clone, double *file_mib) {
    char kernel[4200], initrd[4200], vmdir[4300], cdir[4300], img[4300];
    snprintf(kernel, sizeof(kernel), "%s/kernel/vmlinux", th_images_dir());
    snprintf(initrd, sizeof(initrd), "%s/minimal.cpio.lz4", th_images_dir());
    snprintf(vmdir, sizeof(vmdir), "%s/sr", dir);
    snprintf(cdir, sizeof(cdir), "%s/clone", dir);
    snprintf(img, sizeof(img), "%s/sr/guest.save", dir);
    mkdir(vmdir, 0711);
    mkdir(cdir, 0711);
    chmod(dir, 0711);
    double vc[RUNS], vs[RUNS], vr[RUNS];
    for (int i = 0; i < RUNS; i++) {
        char id[32], cid[40];
        snprintf(id, sizeof(id), "benchsr%d-%d", (int)getpid(), i);
        snprintf(cid, sizeof(cid), "%s-clone", id);
        struct cdn_vm_spec spec = {.id = id,
                                   .dir = vmdir,
                                   .kernel = kernel,
                                   .initrd = initrd,
                                   .memory_mib = 512,
                                   .vcpus = 1,
                                   .transport = CDN_VM_SERIAL};
        struct cdn_vm *vm = NULL;
        _cleanup_err_ cdn_err *err = NULL;
        double t0 = th_now_s();
        ASSERT_OK(cdn_vm_start(h, &spec, &vm, &err), err);
        struct cdn_channel *ch = th_vm_agent(vm);
        exec_ms(ch);
        vc[i] = (th_now_s() - t0) * 1e3;
        sleep(1); /* idle, as a warm VM is */
        t0 = th_now_s();
        ASSERT_OK(cdn_vm_save(vm, img, &err), err);
        vs[i] = (th_now_s() - t0) * 1e3;
        cdn_channel_free(ch); /* saved while connected: the agent never saw the host leave */
        cdn_vm_destroy(vm);
        struct stat st;
        *file_mib = stat(img, &st) == 0 ? (double)st.st_size / 1048576.0 : 0;
        struct cdn_vm_spec cspec = spec;
        cspec.id = cid;
        cspec.dir = cdir;
        t0 = th_now_s();
        ASSERT_OK(cdn_vm_clone(h, img, &cspec, &vm, &err), err);
        ch = th_vm_agent(vm);
        exec_ms(ch);
        vr[i] = (th_now_s() - t0) * 1e3;
        cdn_channel_free(ch);
        cdn_vm_destroy(vm);
        unlink(img);
    }
    *cold = th_median(vc, RUNS);
    *save = th_median(vs, RUNS);
    *clone = th_median(vr, RUNS);
}

int main(void) {
    _cleanup_free_ char *dir = th_tmpdir();
    char daemons[4300], sock[4300], addr[4400], conf[4300], log[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", dir);
    struct cdn_vm_host *h = th_host_hold(daemons);
    snprintf(conf, sizeof(conf), "%s/cordond.yaml", dir);
    th_write_file(conf, "warm_pool: {minimal: 1}\n", 0644);
    snprintf(sock, sizeof(sock), "%s/cordond.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(log, sizeof(log), "%s/cordond.log", dir);
    pid_t daemon = th_cordond_start(dir, sock, "auto",
                                    (const char *[]){"--config", conf, "--max-running", "2", NULL});
    _cleanup_err_ cdn_err *err = NULL;
    struct cdn_client *c = NULL;
    ASSERT_OK(cdn_client_open(&(struct cdn_client_opts){.addr = addr}, &c, &err), err);
    double warm[RUNS], warm_total[RUNS], cold[RUNS], again;
    for (int i = 0; i < RUNS; i++) {
        wait_ready(log, (unsigned)i + 1); /* the pool refilled: nothing boots meanwhile */
        warm_total[i] = start_ms(c, false, &again);
        warm[i] = warm_total[i] - again;
        wait_ready(log, (unsigned)i + 2);
        cold[i] = start_ms(c, true, &again);
    }
    if (th_log_count(log, "started from the warm pool") != RUNS)
        FAIL("%u of %d warm runs came from the pool",
             th_log_count(log, "started from the warm pool"), RUNS);
    cdn_client_free(c);
    th_cordond_stop(daemon);
    unsigned n_cloned = 0, n_booted = 0;
    double refill_clone = pool_ms(log, "cloned", &n_cloned);
    pool_ms(log, "booted", &n_booted);
    if (!n_cloned)
        FAIL("the pool cloned no VM (%s): %u booted", log, n_booted);
    _cleanup_free_ char *tline = th_read_file(log);
    const char *tb = tline ? strstr(tline, "template 1 saved on") : NULL;
    const char *bt = tb ? strstr(tb, "(booted in ") : NULL;
    double template_boot = bt ? strtod(bt + strlen("(booted in "), NULL) : 0;
    double w = th_median(warm, RUNS), wt = th_median(warm_total, RUNS), cl = th_median(cold, RUNS);
    double sr_cold, sr_save, sr_restore, sr_mib = 0;
    save_clone(dir, h, &sr_cold, &sr_save, &sr_restore, &sr_mib);
    printf("warm benchmark: medians of %d, minimal image\n", RUNS);
    printf("  warm start from the pool  %7.1f ms (create to first `true` %.1f ms; goal <= %.0f)\n",
           w, wt, GOAL_MS);
    printf("  cold start through cordond %7.1f ms (create to first `true`)\n", cl);
    printf("  pool refill: a clone %.1f ms to its agent's hello (median of %u), the template's "
           "boot %.1f ms (%u booted)\n",
           refill_clone, n_cloned, template_boot, n_booted);
    printf("  libvirt: cold boot to exec %7.1f ms; save %.1f ms (%.0f MiB); a clone to exec "
           "%.1f ms (%.2fx the cold boot)\n",
           sr_cold, sr_save, sr_mib, sr_restore, sr_restore / sr_cold);
    json_t *root = json_pack(
        "{s:s, s:i, s:{s:{s:s, s:f, s:f, s:f, s:f, s:s}, s:{s:s, s:f, s:f, s:f, s:f, s:f, s:s}}}",
        "benchmark", "warm", "runs", RUNS, "results", "warm_start", "unit", "ms", "cordon", w,
        "create_to_first_exec", wt, "baseline", cl, "ratio", w / cl, "ratio_means",
        "warm start (create to first exec, less an exec) / a cold start through the same "
        "cordond, lower is better; goal <= 50 ms",
        "save_restore", "unit", "ms", "cordon", sr_restore, "baseline", sr_cold, "ratio",
        sr_restore / sr_cold, "save_ms", sr_save, "save_file_mib", sr_mib, "ratio_means",
        "a clone of a saved idle guest (new name) to its first exec / a cold boot to its first "
        "exec; "
        "lower is better");
    json_object_set_new(root, "goal_ms", json_real(GOAL_MS));
    json_t *refill = json_pack(
        "{s:s, s:f, s:f, s:f, s:i, s:i, s:s}", "unit", "ms", "cordon", refill_clone, "baseline",
        template_boot, "ratio", template_boot > 0 ? refill_clone / template_boot : 0, "clones",
        (int)n_cloned, "boots", (int)n_booted, "ratio_means",
        "the warm pool's refill: a clone of its saved template to its agent's hello / the "
        "template's own cold boot to its hello (cordond's log), lower is better");
    json_object_set_new(json_object_get(root, "results"), "pool_refill", refill);
    th_bench_finish(root, "warm", dir);
    return 0;
}
