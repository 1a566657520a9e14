/* SPDX-License-Identifier: Apache-2.0 */
/* bench/qga: running `true` in a guest through cordon-agent against qemu-guest-agent, both in the
 * same guest (the bench-qga image: Debian with qemu-guest-agent, booted by plain QEMU), each on a
 * virtio-serial port of its own. cordon: Exec on the channel until the exit arrives. qemu-ga:
 * guest-exec of /bin/true, then guest-exec-status polled back to back until it says exited (the
 * only way qemu-ga tells an exit). Medians of RUNS batches of BATCH, alternating. Goal: cordon
 * >= 5x faster. Writes bench/results/qga.json. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench.h"
#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"

#define RUNS 7
#define BATCH 20
#define GOAL 5.0

struct qga {
    int fd;
    char buf[65536];
    size_t len;
};

/* One line (a JSON reply) within timeout_ms; a parsed object the caller frees. */
static json_t *qga_read(struct qga *q, int timeout_ms) {
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            /* guest-sync-delimited's answer starts with a 0xFF byte (the resync marker) */
            const char *at = q->buf;
            while (at < nl && (unsigned char)*at == 0xFF)
                at++;
            json_error_t je;
            json_t *v = json_loadb(at, (size_t)(nl - at), 0, &je);
            q->len -= (size_t)(nl + 1 - q->buf);
            memmove(q->buf, nl + 1, q->len);
            if (v)
                return v;
            continue; /* not JSON: skipped */
        }
        int left = (int)(end - th_now_ms());
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            FAIL("qemu-ga: no answer within %d ms", timeout_ms);
        ssize_t n = read(q->fd, q->buf + q->len, sizeof(q->buf) - 1 - q->len);
        if (n <= 0)
            FAIL("qemu-ga: its socket closed");
        q->len += (size_t)n;
    }
}

static json_t *qga_call(struct qga *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *qga_call(struct qga *q, const char *fmt, ...) {
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (write(q->fd, cmd, (size_t)n) != n)
        FAIL("qemu-ga: write: %s", strerror(errno));
    json_t *v = qga_read(q, 20000);
    json_t *ret = json_object_get(v, "return");
    if (!ret)
        FAIL("qemu-ga: %s answered %s", cmd, json_dumps(v, JSON_COMPACT));
    json_incref(ret);
    json_decref(v);
    return ret;
}

/* Connects and syncs (guest-sync-delimited: the agent may hold a half-read command from before). */
static void qga_open(struct qga *q, const char *sock) {
    q->len = 0;
    uint64_t end = th_now_ms() + 120000;
    for (;;) {
        q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        close(q->fd);
        if (th_now_ms() > end)
            FAIL("qemu-ga's socket %s", sock);
        usleep(20000);
    }
    /* Until qemu-ga runs in the guest, nothing answers: retry the sync. */
    for (int id = 1;; id++) {
        char cmd[128];
        int n = snprintf(cmd, sizeof(cmd),
                         "{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%d}}\n", id);
        if (write(q->fd, cmd, (size_t)n) != n)
            FAIL("qemu-ga: write");
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        if (poll(&p, 1, 1000) > 0) {
            json_t *v = qga_read(q, 5000);
            json_int_t got = json_integer_value(json_object_get(v, "return"));
            json_decref(v);
            if (got == id)
                return;
        }
        if (th_now_ms() > end)
            FAIL("qemu-ga never answered a sync");
    }
}

static double qga_batch_ms(struct qga *q) {
    double t0 = th_now_s();
    for (int k = 0; k < BATCH; k++) {
        json_t *r = qga_call(q, "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/true\","
                                "\"capture-output\":true}}\n");
        json_int_t pid = json_integer_value(json_object_get(r, "pid"));
        json_decref(r);
        for (;;) {
            json_t *st =
                qga_call(q, "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%lld}}\n",
                         (long long)pid);
            bool exited = json_is_true(json_object_get(st, "exited"));
            if (exited && json_integer_value(json_object_get(st, "exitcode")) != 0)
                FAIL("qemu-ga: /bin/true exited %lld",
                     (long long)json_integer_value(json_object_get(st, "exitcode")));
            json_decref(st);
            if (exited)
                break;
        }
    }
    return (th_now_s() - t0) / BATCH * 1e3;
}

static double cordon_batch_ms(struct cdn_channel *ch) {
    double t0 = th_now_s();
    for (int k = 0; k < BATCH; k++) {
        struct th_output o = {0};
        struct cdn_exec_result r = th_run(ch, &o, (const char *const[]){"true", NULL});
        ASSERT_EQ(r.exit_code, 0);
        th_output_free(&o);
    }
    return (th_now_s() - t0) / BATCH * 1e3;
}

/* The guest's own cost of starting `true` (a shell loop inside it): the floor both agents sit
 * on. */
static double guest_spawn_ms(struct cdn_channel *ch) {
    struct th_output o = {0};
    double t0 = th_now_s();
    struct cdn_exec_result r =
        th_run(ch, &o,
               (const char *const[]){
                   "sh", "-c", "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done", NULL});
    double ms = (th_now_s() - t0) * 1e3;
    ASSERT_EQ(r.exit_code, 0);
    th_output_free(&o);
    return ms / 100.0;
}

int main(void) {
    char disk[4200];
    snprintf(disk, sizeof(disk), "%s/bench-qga.qcow2", th_images_dir());
    if (access(disk, R_OK) < 0)
        FAIL("%s is missing: `make bench` builds it (images/qga.sh)", disk);
    _cleanup_free_ char *dir = th_tmpdir();
    struct th_vm vm;
    th_vm_boot_opts(&vm, &(struct th_vm_opts){.disk = disk, .qga = true});
    struct cdn_channel *ch = NULL;
    _cleanup_err_ cdn_err *err = NULL;
    ASSERT_OK(th_vm_channel(&vm, 120000, &ch, &err), err);
    struct qga q;
    qga_open(&q, vm.qga_sock);
    cordon_batch_ms(ch); /* warm both: first runs fault pages in */
    qga_batch_ms(&q);
    double vc[RUNS], vq[RUNS], vf[RUNS];
    for (int i = 0; i < RUNS; i++) {
        vc[i] = cordon_batch_ms(ch);
        vq[i] = qga_batch_ms(&q);
        vf[i] = guest_spawn_ms(ch);
    }
    close(q.fd);
    cdn_channel_free(ch);
    th_vm_destroy(&vm);
    double c = th_median(vc, RUNS), g = th_median(vq, RUNS), f = th_median(vf, RUNS);
    printf("qga benchmark: medians of %d batches of %d, the same guest\n", RUNS, BATCH);
    printf("  exec `true`: cordon-agent %.2f ms, qemu-guest-agent %.2f ms: %.1fx faster (goal >= "
           "%.0fx)\n",
           c, g, g / c, GOAL);
    printf("  the guest's own spawn of /bin/true: %.2f ms; above it: cordon %.2f ms, qemu-ga "
           "%.2f ms (%.1fx)\n",
           f, c - f, g - f, (g - f) / (c - f));
    json_t *root =
        json_pack("{s:s, s:i, s:i, s:f, s:{s:{s:s, s:f, s:f, s:f, s:s}}}", "benchmark", "qga",
                  "runs", RUNS, "batch", BATCH, "goal_ratio", GOAL, "results", "exec_true", "unit",
                  "ms", "cordon", c, "baseline", g, "ratio", g / c, "ratio_means",
                  "qemu-guest-agent's time / cordon-agent's for `true`, higher is better");
    json_t *ov =
        json_pack("{s:s, s:f, s:f, s:f, s:f, s:s}", "unit", "ms", "guest_spawn", f, "cordon", c - f,
                  "baseline", g - f, "ratio", (g - f) / (c - f), "ratio_means",
                  "each agent's time above the guest's own spawn of /bin/true: "
                  "qemu-ga's / cordon's, higher is better");
    json_object_set_new(json_object_get(root, "results"), "exec_true_above_spawn", ov);
    th_bench_finish(root, "qga", dir);
    return 0;
}
