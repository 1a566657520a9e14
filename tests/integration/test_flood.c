/* SPDX-License-Identifier: Apache-2.0 */
/* A command printing 200 MiB as fast as it can: the host's memory must stay bounded by the
 * credit window, not by what the guest produces. */
#include <unistd.h>

#include "harness.h"
#include "test.h"

struct counter {
    uint64_t bytes;
    long peak_rss_kib;
    uint64_t calls;
};

static int count(void *ud, int fd, const uint8_t *data, size_t len) {
    (void)fd;
    (void)data;
    struct counter *c = ud;
    c->bytes += len;
    if (++c->calls % 64 == 0) {
        long rss = th_rss_kib();
        if (rss > c->peak_rss_kib)
            c->peak_rss_kib = rss;
    }
    return 0;
}

TEST_T(flood_of_200_mib_keeps_host_memory_bounded, 300) {
    struct th_agent a;
    const uint32_t window = 1u << 20;
    struct cdn_channel_opts opts = {
        .name = "flood", .stream_window = window, .max_frame_bytes = 1u << 20};
    struct cdn_channel *ch = th_channel(&a, &opts);
    /* Warm up allocator pools with a small run, then measure. */
    struct counter c = {0};
    const char *warm[] = {"head", "-c", "4000000", "/dev/zero", NULL};
    struct cdn_exec_spec spec = {.argv = warm, .argc = 4};
    struct cdn_exec_result r;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_exec(ch, &spec, count, &c, 60000, &r, &err), err);
    long before = th_rss_kib();
    c = (struct counter){.peak_rss_kib = before};
    const char *argv[] = {"head", "-c", "209715200", "/dev/zero", NULL};
    spec = (struct cdn_exec_spec){.argv = argv, .argc = 4};
    ASSERT_OK(cdn_channel_exec(ch, &spec, count, &c, 240000, &r, &err), err);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_EQ(c.bytes, 209715200ull);
    long growth = c.peak_rss_kib - before;
    printf("  host RSS before %ld KiB, peak %ld KiB, growth %ld KiB for 200 MiB of output "
           "(window %u KiB, frame max %u KiB)\n",
           before, c.peak_rss_kib, growth, window / 1024, opts.max_frame_bytes / 1024);
    /* The decoder holds at most a frame plus one read; the arena one frame. Allow 4 windows. */
    ASSERT_LE(growth, 4 * (long)(window / 1024) + 2048);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}
