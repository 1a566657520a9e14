/* SPDX-License-Identifier: Apache-2.0 */
/* bench/batch: a batch of `true` tasks through cordond and `cordon batch`, against raw QEMU boots
 * doing the same at the same concurrency. In one process run:
 *   (a) raw: P threads, each booting plain QEMU (direct kernel boot of the same kernel and
 *       initramfs), waiting for the agent's Hello, running `true` over the channel and killing
 *       QEMU, BENCH_BATCH_RAW tasks in all (default 24): tasks per minute;
 *   (b) cordon: `cordon batch --parallel P` of BENCH_BATCH_TASKS tasks (default 1000), each a
 *       sandbox (scheduler, store, policy, evidence, libvirt domain, boot, exec, stop): tasks per
 *       minute, and cordond's RSS after a 10-task warm-up and at the end (goal: flat);
 *   (c) pooled: the same through a cordond with a warm pool of P minimal VMs (cloned from saved
 *       templates where that is faster), BENCH_BATCH_POOL_TASKS tasks (default 200): tasks per
 *       minute, and how many sandboxes came from the pool;
 * the scheduler's overhead is raw rate / cordon rate - 1 (goal <= 5%). P is BENCH_BATCH_PARALLEL
 * (default: the host's CPUs). Writes bench/results/batch.json. */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cleanup.h"
#include "cordon_cli.h"
#include "cordond.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "vmhost.h"

#define GOAL_OVERHEAD 0.05

static unsigned env_uint(const char *name, unsigned def) {
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : def;
}

/* ---- (a) raw QEMU ---- */

struct raw {
    unsigned tasks; /* this thread's */
};

static void *raw_worker(void *arg) {
    struct raw *r = arg;
    for (unsigned i = 0; i < r->tasks; i++) {
        struct th_vm vm;
        th_vm_boot(&vm, NULL);
        struct cdn_channel *ch = NULL;
        _cleanup_err_ cdn_err *err = NULL;
        ASSERT_OK(th_vm_channel(&vm, 120000, &ch, &err), err);
        struct th_output out = {0};
        struct cdn_exec_result res = th_run(ch, &out, (const char *const[]){"true", NULL});
        ASSERT_EQ(res.exit_code, 0);
        th_output_free(&out);
        cdn_channel_free(ch);
        th_vm_destroy(&vm);
    }
    return NULL;
}

static double raw_rate_per_min(unsigned parallel, unsigned tasks) {
    pthread_t th[64];
    struct raw r[64];
    double t0 = th_now_s();
    for (unsigned i = 0; i < parallel; i++) {
        r[i].tasks = tasks / parallel + (i < tasks % parallel);
        if (pthread_create(&th[i], NULL, raw_worker, &r[i]) != 0)
            FAIL("pthread_create");
    }
    for (unsigned i = 0; i < parallel; i++)
        pthread_join(th[i], NULL);
    return tasks / ((th_now_s() - t0) / 60.0);
}

/* ---- (b) cordond ---- */

static void write_tasks(const char *path, const char *policy, const char *prefix, unsigned n) {
    FILE *f = fopen(path, "w");
    if (!f)
        FAIL("cannot write %s", path);
    for (unsigned i = 0; i < n; i++)
        fprintf(f, "{\"id\": \"%s%u\", \"policy\": \"%s\", \"commands\": [[\"true\"]]}\n", prefix,
                i, policy);
    fclose(f);
}

/* Runs a batch file; returns its seconds, and fails unless every task passed. */
static double run_batch(const char *addr, const char *dir, const char *file, unsigned parallel,
                        unsigned tasks) {
    char par[16], results[4400];
    snprintf(par, sizeof(par), "%u", parallel);
    double t0 = th_now_s();
    struct th_ran r =
        th_cordon_at(addr, "batch", dir, "batch", (const char *[]){"--parallel", par, file, NULL});
    double s = th_now_s() - t0;
    if (r.code != 0)
        FAIL("cordon batch exited %d: %s", r.code, r.err);
    th_ran_free(&r);
    snprintf(results, sizeof(results), "%.*s.results.jsonl", (int)(strlen(file) - 6), file);
    _cleanup_free_ char *all = th_read_file(results);
    unsigned passed = 0;
    for (const char *p = all; p && (p = strstr(p, "\"state\":\"passed\"")); p++)
        passed++;
    if (passed != tasks)
        FAIL("%u of %u tasks passed (%s)", passed, tasks, results);
    return s;
}

int main(void) {
    unsigned cpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    unsigned parallel = env_uint("BENCH_BATCH_PARALLEL", cpus ? cpus : 2);
    unsigned tasks = env_uint("BENCH_BATCH_TASKS", 1000);
    unsigned raw_tasks = env_uint("BENCH_BATCH_RAW", 24);
    if (parallel < 1 || parallel > 64 || tasks < 1 || raw_tasks < parallel)
        FAIL("BENCH_BATCH_PARALLEL 1..64, BENCH_BATCH_TASKS >= 1, BENCH_BATCH_RAW >= parallel");
    _cleanup_free_ char *dir = th_tmpdir();
    char daemons[4300], sock[4300], addr[4400], pol[4300], warm[4300], big[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", dir);
    th_host_hold(daemons);
    printf("batch benchmark: %u tasks of `true` through cordond, %u at once; raw QEMU: %u tasks\n",
           tasks, parallel, raw_tasks);
    fflush(stdout);

    double raw = raw_rate_per_min(parallel, raw_tasks);
    printf("  raw QEMU boot + hello + exec + kill  %7.1f tasks/min\n", raw);
    fflush(stdout);

    snprintf(sock, sizeof(sock), "%s/cordond.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    char maxrun[16];
    snprintf(maxrun, sizeof(maxrun), "%u", parallel);
    pid_t daemon =
        th_cordond_start(dir, sock, "auto", (const char *[]){"--max-running", maxrun, NULL});
    snprintf(pol, sizeof(pol), "%s/allow.yaml", dir);
    th_write_file(pol, "version: 1\ncommands: {default: allow}\n", 0644);
    snprintf(warm, sizeof(warm), "%s/warmup.jsonl", dir);
    snprintf(big, sizeof(big), "%s/big.jsonl", dir);
    write_tasks(warm, pol, "w", 10);
    write_tasks(big, pol, "t", tasks);
    run_batch(addr, dir, warm, parallel, 10);
    long rss0 = th_proc_status_kib(daemon, "VmRSS");
    double secs = run_batch(addr, dir, big, parallel, tasks);
    long rss1 = th_proc_status_kib(daemon, "VmRSS"), hwm = th_proc_status_kib(daemon, "VmHWM");
    double rate = tasks / (secs / 60.0);
    double overhead = raw / rate - 1.0;
    printf("  cordon batch                         %7.1f tasks/min (%.0f s)\n", rate, secs);
    printf("  scheduler overhead vs raw boots      %+6.1f%% (goal <= %.0f%%)\n", overhead * 100,
           GOAL_OVERHEAD * 100);
    printf("  cordond RSS %ld KiB after warm-up, %ld KiB at the end (peak %ld KiB)\n", rss0, rss1,
           hwm);
    th_cordond_stop(daemon);

    /* (c) the same tasks, sandboxes from a warm pool of P */
    unsigned pool_tasks = env_uint("BENCH_BATCH_POOL_TASKS", 200);
    char pdir[4300], psock[4400], paddr[4500], conf[4400], plog[4400], pbig[4400];
    snprintf(pdir, sizeof(pdir), "%s/pooled", dir);
    mkdir(pdir, 0711);
    snprintf(psock, sizeof(psock), "%s/cordond.sock", pdir);
    snprintf(paddr, sizeof(paddr), "unix:%s", psock);
    snprintf(conf, sizeof(conf), "%s/cordond.yaml", pdir);
    snprintf(plog, sizeof(plog), "%s/cordond.log", pdir);
    snprintf(pbig, sizeof(pbig), "%s/pooled.jsonl", pdir);
    char yaml[64];
    snprintf(yaml, sizeof(yaml), "warm_pool: {minimal: %u}\n", parallel);
    th_write_file(conf, yaml, 0644);
    pid_t pooled = th_cordond_start(
        pdir, psock, "auto", (const char *[]){"--max-running", maxrun, "--config", conf, NULL});
    write_tasks(pbig, pol, "p", pool_tasks);
    char ready[64];
    snprintf(ready, sizeof(ready), "warm pool minimal: %u of %u ready", parallel, parallel);
    for (int i = 0; i < 1200 && !th_log_count(plog, ready); i++)
        usleep(100000);
    double psecs = run_batch(paddr, pdir, pbig, parallel, pool_tasks);
    double prate = pool_tasks / (psecs / 60.0);
    unsigned from_pool = th_log_count(plog, "started from the warm pool");
    th_cordond_stop(pooled);
    printf("  cordon batch, warm pool of %u         %7.1f tasks/min (%.0f s; %u of %u sandboxes "
           "from the pool)\n",
           parallel, prate, psecs, from_pool, pool_tasks);

    json_t *root = json_pack(
        "{s:s, s:i, s:i, s:i, s:f, s:{s:{s:s, s:f, s:f, s:f, s:s}, s:{s:s, s:I, s:I, "
        "s:I, s:f}}}",
        "benchmark", "batch", "tasks", (int)tasks, "parallel", (int)parallel, "raw_tasks",
        (int)raw_tasks, "goal_overhead", GOAL_OVERHEAD, "results", "throughput", "unit",
        "tasks/min", "cordon", rate, "baseline", raw, "ratio", rate / raw, "ratio_means",
        "cordon / raw QEMU tasks per minute at the same concurrency, higher is better",
        "cordond_rss", "unit", "KiB", "after_warmup", (json_int_t)rss0, "at_end", (json_int_t)rss1,
        "peak", (json_int_t)hwm, "growth_ratio", rss0 > 0 ? (double)rss1 / (double)rss0 : 0.0);
    json_object_set_new(root, "overhead", json_real(overhead));
    json_object_set_new(
        json_object_get(root, "results"), "pooled_throughput",
        json_pack("{s:s, s:f, s:f, s:f, s:i, s:i, s:s}", "unit", "tasks/min", "cordon", prate,
                  "baseline", raw, "ratio", prate / raw, "tasks", (int)pool_tasks, "from_pool",
                  (int)from_pool, "ratio_means",
                  "cordon with a warm pool of P (cloned VMs) / raw QEMU boots, tasks per "
                  "minute at the same concurrency, higher is better"));
    json_object_set_new(root, "seconds", json_real(secs));
    th_bench_finish(root, "batch", dir);
    return 0;
}
