/* SPDX-License-Identifier: Apache-2.0 */
/* bench/channel: the host<->agent channel against the limit of the socketpair it runs on.
 * Each figure is a median over RUNS runs, measured in one process run next to its baseline:
 *   ping round trip       vs a 1-byte echo over a raw socketpair
 *   exec `true`           vs fork/exec/wait of `true` on the host
 *   archive_get (tree)    vs the same bytes through a raw write/read loop
 *   archive_put (tree)    vs the same
 * and, for the two end-to-end tree transfers, a local `cp -r` of the same tree on the same
 * filesystem: what copying it costs with no VM boundary at all.
 * Writes bench/results/channel.json (jansson), including where the trees lived ($TMPDIR). */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"

#define RUNS 21
#define RAW_CHUNK (256u * 1024u)

/* ---- baselines on a raw socketpair ---- */

static double raw_echo_rtt_us(void) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        char c;
        while (read(sv[1], &c, 1) == 1 && write(sv[1], &c, 1) == 1)
            ;
        _exit(0);
    }
    close(sv[1]);
    double v[RUNS];
    for (int i = 0; i < RUNS; i++) {
        char c = 'x';
        double t0 = th_now_s();
        for (int k = 0; k < 100; k++)
            if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1)
                FAIL("echo");
        v[i] = (th_now_s() - t0) / 100 * 1e6;
    }
    close(sv[0]);
    waitpid(pid, NULL, 0);
    return th_median(v, RUNS);
}

static double local_spawn_ms(void) {
    double v[RUNS];
    for (int i = 0; i < RUNS; i++) {
        double t0 = th_now_s();
        pid_t pid = fork();
        if (pid == 0) {
            execlp("true", "true", (char *)NULL);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
        v[i] = (th_now_s() - t0) * 1e3;
    }
    return th_median(v, RUNS);
}

/* Pushes total bytes from a child to us through a socketpair in RAW_CHUNK writes. */
static double raw_stream_mib_s(uint64_t total) {
    double v[RUNS];
    _cleanup_free_ uint8_t *buf = malloc(RAW_CHUNK);
    memset(buf, 0x5a, RAW_CHUNK);
    for (int i = 0; i < RUNS; i++) {
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        double t0 = th_now_s();
        pid_t pid = fork();
        if (pid == 0) {
            close(sv[0]);
            for (uint64_t left = total; left > 0;) {
                size_t n = left < RAW_CHUNK ? (size_t)left : RAW_CHUNK;
                ssize_t w = write(sv[1], buf, n);
                if (w <= 0)
                    _exit(1);
                left -= (uint64_t)w;
            }
            _exit(0);
        }
        close(sv[1]);
        uint64_t got = 0;
        ssize_t n;
        while ((n = read(sv[0], buf, RAW_CHUNK)) > 0)
            got += (uint64_t)n;
        waitpid(pid, NULL, 0);
        close(sv[0]);
        if (got != total)
            FAIL("raw stream got %llu of %llu", (unsigned long long)got, (unsigned long long)total);
        v[i] = (double)total / (1 << 20) / (th_now_s() - t0);
    }
    return th_median(v, RUNS);
}

/* ---- the channel ---- */

static double channel_ping_us(struct cdn_channel *ch) {
    double v[RUNS];
    cdn_err *err = NULL;
    for (int i = 0; i < RUNS; i++) {
        double t0 = th_now_s();
        for (int k = 0; k < 100; k++)
            ASSERT_OK(cdn_channel_ping(ch, 5000, &err), err);
        v[i] = (th_now_s() - t0) / 100 * 1e6;
    }
    return th_median(v, RUNS);
}

static double channel_exec_ms(struct cdn_channel *ch) {
    double v[RUNS];
    const char *argv[] = {"true", NULL};
    struct cdn_exec_spec spec = {.argv = argv, .argc = 1};
    cdn_err *err = NULL;
    for (int i = 0; i < RUNS; i++) {
        struct cdn_exec_result r;
        double t0 = th_now_s();
        ASSERT_OK(cdn_channel_exec(ch, &spec, NULL, NULL, 10000, &r, &err), err);
        v[i] = (th_now_s() - t0) * 1e3;
        ASSERT_EQ(r.exit_code, 0);
    }
    return th_median(v, RUNS);
}

/* A tree like a mid-sized repository with some build output: 16 x 4 MiB + 512 x 16 KiB. */
static uint64_t make_tree(const char *dir) {
    th_sh(
        "mkdir -p %s/big %s/small && for i in $(seq 1 16); do head -c 4194304 /dev/urandom > "
        "%s/big/f$i; done && for i in $(seq 1 512); do head -c 16384 /dev/urandom > %s/small/s$i; "
        "done",
        dir, dir, dir, dir);
    return 16ull * 4194304 + 512ull * 16384;
}

static double archive_get_mib_s(struct cdn_channel *ch, const char *src, const char *work,
                                uint64_t bytes) {
    double v[RUNS];
    cdn_err *err = NULL;
    for (int i = 0; i < RUNS; i++) {
        char dst[4200];
        snprintf(dst, sizeof(dst), "%s/get-%d", work, i);
        mkdir(dst, 0755);
        _cleanup_close_ int fd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        double t0 = th_now_s();
        ASSERT_OK(cdn_channel_archive_get(ch, src, NULL, 0, fd, NULL, 60000, NULL, &err), err);
        v[i] = (double)bytes / (1 << 20) / (th_now_s() - t0);
        th_rmtree(dst);
    }
    return th_median(v, RUNS);
}

static int count_entry(void *ud, const struct cdn_archive_entry *e, cdn_err **err) {
    (void)ud, (void)e, (void)err;
    return 0;
}
static int count_data(void *ud, const uint8_t *p, size_t n, cdn_err **err) {
    (void)p, (void)err;
    *(uint64_t *)ud += n;
    return 0;
}
static int count_end(void *ud, cdn_err **err) {
    (void)ud, (void)err;
    return 0;
}

/* The stream alone: the agent's tar writer, the channel and the host's bounded reader, with the
 * host's filesystem left out (a sink that counts). */
static double archive_stream_mib_s(struct cdn_channel *ch, const char *src, uint64_t bytes) {
    double v[RUNS];
    cdn_err *err = NULL;
    for (int i = 0; i < RUNS; i++) {
        uint64_t got = 0;
        struct cdn_archive_sink sink = {count_entry, count_data, count_end, &got};
        double t0 = th_now_s();
        ASSERT_OK(cdn_channel_archive_get_sink(ch, src, NULL, 0, &sink, NULL, 60000, NULL, &err),
                  err);
        v[i] = (double)bytes / (1 << 20) / (th_now_s() - t0);
        ASSERT_EQ(got, bytes);
    }
    return th_median(v, RUNS);
}

static double archive_put_mib_s(struct cdn_channel *ch, const char *src, const char *work,
                                uint64_t bytes) {
    double v[RUNS];
    cdn_err *err = NULL;
    _cleanup_close_ int fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; i < RUNS; i++) {
        char dst[4200];
        snprintf(dst, sizeof(dst), "%s/put-%d", work, i);
        double t0 = th_now_s();
        ASSERT_OK(cdn_channel_archive_put(ch, fd, NULL, 0, dst, 60000, NULL, &err), err);
        v[i] = (double)bytes / (1 << 20) / (th_now_s() - t0);
        th_rmtree(dst);
    }
    return th_median(v, RUNS);
}

/* ratio is always cordon / baseline, as printed: for times lower is better (1.0 = no overhead),
 * for throughputs higher is better (1.0 = at the limit). */
static double local_cp_mib_s(const char *src, const char *work, uint64_t bytes) {
    double v[RUNS];
    for (int i = 0; i < RUNS; i++) {
        char dst[4200];
        snprintf(dst, sizeof(dst), "%s/cp-%d", work, i);
        double t0 = th_now_s();
        th_sh("cp -r %s %s", src, dst);
        v[i] = (double)bytes / (1 << 20) / (th_now_s() - t0);
        th_rmtree(dst);
    }
    return th_median(v, RUNS);
}

static json_t *pair(const char *unit, double ours, double base, bool higher_is_better) {
    return json_pack("{s:s, s:f, s:f, s:f, s:s}", "unit", unit, "cordon", ours, "baseline", base,
                     "ratio", ours / base, "ratio_means",
                     higher_is_better ? "cordon / baseline throughput, higher is better"
                                      : "cordon / baseline time, lower is better");
}

static void bench(void) {
    const char *out_path = getenv("BENCH_OUT") ? getenv("BENCH_OUT") : "bench/results/channel.json";
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *work = th_tmpdir();
    char src[4200];
    snprintf(src, sizeof(src), "%s/tree", work);
    uint64_t bytes = make_tree(src);

    double ping = channel_ping_us(ch), echo = raw_echo_rtt_us();
    double exec_ms = channel_exec_ms(ch), spawn_ms = local_spawn_ms();
    double stream = archive_stream_mib_s(ch, src, bytes);
    double get = archive_get_mib_s(ch, src, work, bytes);
    double put = archive_put_mib_s(ch, src, work, bytes);
    double raw = raw_stream_mib_s(bytes);
    double cp = local_cp_mib_s(src, work, bytes);

    printf("channel benchmark: medians of %d runs, agent over a socketpair\n", RUNS);
    printf("  ping round trip        %8.1f us   raw 1-byte echo  %8.1f us   (%.2fx)\n", ping, echo,
           ping / echo);
    printf("  exec `true`            %8.2f ms   local fork/exec  %8.2f ms   (%.2fx)\n", exec_ms,
           spawn_ms, exec_ms / spawn_ms);
    printf("  archive stream %3.0f MiB  %8.0f MiB/s raw write/read %8.0f MiB/s (%.2fx of raw)\n",
           (double)bytes / (1 << 20), stream, raw, stream / raw);
    printf("  archive_get %3.0f MiB     %8.0f MiB/s raw write/read %8.0f MiB/s (%.2fx of raw)\n",
           (double)bytes / (1 << 20), get, raw, get / raw);
    printf("  archive_put %3.0f MiB     %8.0f MiB/s raw write/read %8.0f MiB/s (%.2fx of raw)\n",
           (double)bytes / (1 << 20), put, raw, put / raw);
    printf("  local cp -r %3.0f MiB     %8.0f MiB/s (get %.2fx, put %.2fx of it)\n",
           (double)bytes / (1 << 20), cp, get / cp, put / cp);

    struct utsname u;
    uname(&u);
    char when[64];
    time_t t = time(NULL);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    /* Built key by key: a variadic format and its arguments drift apart too easily. */
    json_t *results = json_object();
    json_object_set_new(results, "ping_round_trip", pair("us", ping, echo, false));
    json_object_set_new(results, "exec_true", pair("ms", exec_ms, spawn_ms, false));
    json_object_set_new(results, "archive_stream", pair("MiB/s", stream, raw, true));
    json_object_set_new(results, "archive_get", pair("MiB/s", get, raw, true));
    json_object_set_new(results, "archive_put", pair("MiB/s", put, raw, true));
    json_object_set_new(results, "archive_get_vs_local_cp", pair("MiB/s", get, cp, true));
    json_object_set_new(results, "archive_put_vs_local_cp", pair("MiB/s", put, cp, true));
    json_t *root = json_object();
    json_object_set_new(root, "benchmark", json_string("channel"));
    json_object_set_new(root, "date", json_string(when));
    json_object_set_new(root, "host", json_string(u.release));
    json_object_set_new(root, "tree_dir", json_string(tmp));
    json_object_set_new(root, "runs", json_integer(RUNS));
    json_object_set_new(root, "tree_bytes", json_integer((json_int_t)bytes));
    json_object_set_new(root, "goal_archive_ratio", json_real(0.8));
    json_object_set_new(root, "results", results);
    if (!root || json_dump_file(root, out_path, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
        FAIL("writing %s", out_path);
    json_decref(root);
    printf("  written to %s\n", out_path);
    th_rmtree(work);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

int main(void) {
    bench();
    return 0;
}
