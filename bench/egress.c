/* SPDX-License-Identifier: Apache-2.0 */
/* bench/egress: download throughput through the egress path (busybox wget in the guest -> the
 * agent's proxy -> the channel -> the host's egress -> a loopback HTTP server) against the same
 * download by the same client run on the host, in one process run. Medians of RUNS downloads
 * of SIZE bytes each. For context it also times the guest copying SIZE bytes through a pipe
 * (dd | cat): under TCG that is the ceiling of anything the guest's CPU moves; and the channel's
 * own host -> guest rate (a FileWrite of SIZE bytes), the path every egress byte takes. Writes
 * bench/results/egress.json. Goal: ratio >= 0.5 under TCG. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "cleanup.h"
#include "harness.h"
#include "httpd.h"
#include "policy.h"
#include "qemu.h"
#include "task.h"
#include "test.h"

#define RUNS 3
#define SIZE (64ull << 20)
#define GOAL 0.5

int main(void) {
    const char *out_path = getenv("BENCH_OUT") ? getenv("BENCH_OUT") : "bench/results/egress.json";
    _cleanup_free_ char *dir = th_tmpdir();
    struct th_httpd *web = th_httpd_start("127.0.0.2");
    uint16_t port = th_httpd_port(web);
    char policy_text[512], url[128];
    snprintf(policy_text, sizeof(policy_text),
             "version: 1\ncommands: {default: allow}\nnetwork:\n  egress:\n    rules:\n"
             "      - {host: 127.0.0.2, ports: [%u]}\n",
             port);
    snprintf(url, sizeof(url), "http://127.0.0.2:%u/bytes/%llu", port, SIZE);
    struct cdn_policy *pol = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_policy_parse("bench.yaml", policy_text, strlen(policy_text), &pol, &err), err);

    /* the host: the same client, no proxy */
    double host_s[RUNS], guest_s[RUNS], pipe_s[RUNS], write_s[RUNS];
    for (int i = 0; i < RUNS; i++) {
        double t0 = th_now_s();
        th_sh("env -u http_proxy -u HTTP_PROXY busybox wget -q -O /dev/null '%s'", url);
        host_s[i] = th_now_s() - t0;
    }

    char state[4300];
    snprintf(state, sizeof(state), "%s/state", dir);
    struct cdn_task_spec spec = {.state_dir = state,
                                 .images_dir = th_images_dir(),
                                 .image = "minimal",
                                 .boot_timeout_ms = 120000,
                                 .policy = pol};
    struct cdn_session *s = NULL;
    ASSERT_OK(cdn_session_open(&spec, NULL, &s, &err), err);
    ASSERT_OK(cdn_session_boot(s, &err), err);
    const char *argv[] = {"wget", "-q", "-O", "/dev/null", url};
    struct cdn_exec_spec x = {.argv = argv, .argc = 5};
    for (int i = 0; i < RUNS; i++) {
        struct cdn_exec_result r;
        double t0 = th_now_s();
        ASSERT_OK(cdn_channel_exec(cdn_session_channel(s), &x, NULL, NULL, 600000, &r, &err), err);
        guest_s[i] = th_now_s() - t0;
        ASSERT_EQ(r.exit_code, 0);
        char dd[160];
        snprintf(dd, sizeof(dd), "dd if=/dev/zero bs=65536 count=%llu 2>/dev/null | cat >/dev/null",
                 SIZE / 65536);
        const char *sh[] = {"sh", "-c", dd};
        struct cdn_exec_spec px = {.argv = sh, .argc = 3};
        t0 = th_now_s();
        ASSERT_OK(cdn_channel_exec(cdn_session_channel(s), &px, NULL, NULL, 600000, &r, &err), err);
        pipe_s[i] = th_now_s() - t0;
        static char zeros[SIZE];
        t0 = th_now_s();
        ASSERT_OK(cdn_channel_file_write(cdn_session_channel(s), "/tmp/bench-write", 0644, zeros,
                                         SIZE, 600000, &err),
                  err);
        write_s[i] = th_now_s() - t0;
    }
    const char *accel = cdn_session_info(s)->accel;
    char *accel_kept = strdup(accel);
    cdn_session_close(s, NULL, NULL);
    ASSERT_EQ(th_httpd_requests(web), 2u * RUNS);

    double h = th_median(host_s, RUNS), g = th_median(guest_s, RUNS), pp = th_median(pipe_s, RUNS),
           fw = th_median(write_s, RUNS);
    double mib = (double)SIZE / 1048576.0, ratio = h / g;
    printf("egress benchmark: medians of %d downloads of %.0f MiB (busybox wget), %s\n", RUNS, mib,
           accel_kept);
    printf("  on the host, direct            %8.1f MiB/s\n", mib / h);
    printf("  in the guest, through egress   %8.1f MiB/s\n", mib / g);
    printf("  in the guest, a pipe (dd | cat) %7.1f MiB/s (the guest CPU's ceiling; egress is "
           "%.2f of it)\n",
           mib / pp, pp / g);
    printf("  the channel, host -> guest     %8.1f MiB/s (a FileWrite: egress is %.2f of it)\n",
           mib / fw, fw / g);
    printf("  ratio %.2f (goal >= %.1f): %s\n", ratio, GOAL, ratio >= GOAL ? "met" : "NOT met");

    struct utsname u;
    uname(&u);
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:i, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}",
                  "benchmark", "egress", "host", u.release, "accel", accel_kept, "runs", RUNS,
                  "bytes", (json_int_t)SIZE, "host_mib_s", mib / h, "guest_mib_s", mib / g, "ratio",
                  ratio, "goal", GOAL, "guest_pipe_mib_s", mib / pp, "ratio_to_guest_pipe", pp / g,
                  "channel_write_mib_s", mib / fw, "ratio_to_channel_write", fw / g, "ratio_means",
                  "guest download through egress / the same download on the host (throughput)");
    json_dump_file(root, out_path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    free(accel_kept);
    th_httpd_stop(web);
    cdn_policy_free(pol);
    th_rmtree(dir);
    return 0;
}
