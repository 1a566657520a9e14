/* SPDX-License-Identifier: Apache-2.0 */
/* bench/density: what an idle sandbox costs the host. BENCH_DENSITY_SANDBOXES (default 8)
 * minimal sandboxes are created through cordond, each runs `true` (its VM booted, its agent
 * up) and is left idle for a few seconds; then each one's QEMU is read from
 * /proc/PID/smaps_rollup: its PSS (shared pages split between the QEMUs that map them) against
 * the guest's RAM (goal <= 40%), and how many such sandboxes the host's available memory would
 * hold. Writes bench/results/density.json. */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "api_client.h"
#include "bench.h"
#include "cleanup.h"
#include "cordon.pb-c.h"
#include "cordond.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

#define GOAL_RATIO 0.40
#define GUEST_MIB 512
#define IDLE_S 5

static long meminfo_kib(const char *field) {
    FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    long kib = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kib = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

/* The QEMU running domain cordon-<id>: its PSS in KiB (-1: not found). */
static long qemu_pss_kib(const char *id) {
    char want[64];
    snprintf(want, sizeof(want), "guest=cordon-%.16s,", id);
    DIR *d = opendir("/proc");
    long pss = -1;
    for (struct dirent *e; d && pss < 0 && (e = readdir(d));) {
        char path[300], cmd[8192];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
        close(fd);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            cmd[i] = cmd[i] ? cmd[i] : ' ';
        cmd[n] = '\0';
        if (!strstr(cmd, want))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/smaps_rollup", e->d_name);
        FILE *f = fopen(path, "re");
        char line[256];
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "Pss: %ld", &pss) == 1)
                break;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return pss;
}

int main(void) {
    unsigned n = getenv("BENCH_DENSITY_SANDBOXES")
                     ? (unsigned)strtoul(getenv("BENCH_DENSITY_SANDBOXES"), NULL, 10)
                     : 8;
    if (n < 1 || n > 64)
        FAIL("BENCH_DENSITY_SANDBOXES is 1 to 64");
    _cleanup_free_ char *dir = th_tmpdir();
    char daemons[4300], sock[4300], addr[4400], maxrun[16];
    snprintf(daemons, sizeof(daemons), "%s/run", dir);
    th_host_hold(daemons);
    long avail0 = meminfo_kib("MemAvailable");
    snprintf(sock, sizeof(sock), "%s/cordond.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(maxrun, sizeof(maxrun), "%u", n);
    pid_t daemon =
        th_cordond_start(dir, sock, "auto", (const char *[]){"--max-running", maxrun, NULL});
    _cleanup_err_ cdn_err *err = NULL;
    struct cdn_client *c = NULL;
    ASSERT_OK(cdn_client_open(&(struct cdn_client_opts){.addr = addr}, &c, &err), err);
    char ids[64][17];
    for (unsigned i = 0; i < n; i++) {
        Cordon__V1__CreateSandboxRequest q = CORDON__V1__CREATE_SANDBOX_REQUEST__INIT;
        q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
        q.policy_text = (char *)"version: 1\ncommands: {default: allow}\n";
        q.image = (char *)"minimal";
        ProtobufCMessage *m = NULL;
        ASSERT_OK(cdn_client_call(c, "CreateSandbox", &q.base, &cordon__v1__sandbox__descriptor, &m,
                                  30000, &err),
                  err);
        snprintf(ids[i], sizeof(ids[i]), "%s", ((Cordon__V1__Sandbox *)m)->id);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    for (unsigned i = 0; i < n; i++) /* each waits for its boot */
        th_bench_exec_true(c, ids[i], 300000);
    sleep(IDLE_S);
    double pss[64];
    for (unsigned i = 0; i < n; i++) {
        long k = qemu_pss_kib(ids[i]);
        if (k <= 0)
            FAIL("no QEMU found for sandbox %s", ids[i]);
        pss[i] = (double)k / 1024.0;
    }
    long avail1 = meminfo_kib("MemAvailable");
    for (unsigned i = 0; i < n; i++)
        th_bench_delete(c, ids[i]);
    cdn_client_free(c);
    th_cordond_stop(daemon);
    double med = th_median(pss, n), ratio = med / GUEST_MIB;
    double per_drop = (double)(avail0 - avail1) / 1024.0 / n;
    unsigned fit = (unsigned)((double)avail0 / 1024.0 / med);
    printf("density benchmark: %u idle minimal sandboxes (%d MiB guests)\n", n, GUEST_MIB);
    printf(
        "  PSS per idle sandbox's QEMU  %6.1f MiB median (%.0f%% of guest RAM, goal <= %.0f%%)\n",
        med, ratio * 100, GOAL_RATIO * 100);
    printf("  MemAvailable drop per sandbox %6.1f MiB; %u would fit in %ld MiB available\n",
           per_drop, fit, avail0 / 1024);

    json_t *root =
        json_pack("{s:s, s:i, s:i, s:f, s:{s:{s:s, s:f, s:f, s:f, s:s}, s:{s:s, s:f, s:I, s:i}}}",
                  "benchmark", "density", "sandboxes", (int)n, "guest_mib", GUEST_MIB, "goal_ratio",
                  GOAL_RATIO, "results", "idle_pss", "unit", "MiB", "cordon", med, "baseline",
                  (double)GUEST_MIB, "ratio", ratio, "ratio_means",
                  "PSS of an idle sandbox's QEMU / its guest RAM, lower is better", "fit", "unit",
                  "sandboxes", "memavailable_drop_mib_each", per_drop, "memavailable_mib",
                  (json_int_t)(avail0 / 1024), "idle_sandboxes_that_fit", (int)fit);
    th_bench_finish(root, "density", dir);
    return 0;
}
