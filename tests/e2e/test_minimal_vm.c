/* SPDX-License-Identifier: Apache-2.0 */
/* The minimal guest image in a real VM (QEMU, TCG): the agent answers over virtio-serial, runs
 * commands in the guest's kernel, moves trees, takes a new host's clock, and powers the VM off on
 * Shutdown. Two boots, on
 * purpose: a TCG boot costs seconds. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

TEST_T(minimal_vm_runs_commands_and_powers_off, 180) {
    struct th_vm vm;
    th_vm_boot(&vm, "cordon.test=e2e");
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    uint64_t t0 = th_now_ms();
    ASSERT_OK(th_vm_channel(&vm, 60000, &ch, &err), err);
    printf("  agent answered %llu ms after qemu started\n", (unsigned long long)(th_now_ms() - t0));

    /* It really is another kernel: Debian's cloud kernel, with our command line. */
    struct th_output o = {0};
    struct cdn_exec_result r = th_run(ch, &o, ARGV("sh", "-c", "uname -r; cat /proc/cmdline"));
    ASSERT_EQ(r.exit_code, 0);
    struct utsname host;
    uname(&host);
    ASSERT_CONTAINS(th_output_str(&o, 1), "cloud-amd64");
    ASSERT_CONTAINS(th_output_str(&o, 1), "cordon.test=e2e");
    ASSERT_TRUE(strncmp(th_output_str(&o, 1), host.release, strlen(host.release)) != 0);
    th_output_free(&o);

    /* Exit codes and stderr. */
    r = th_run(ch, &o, ARGV("sh", "-c", "echo oops >&2; exit 42"));
    ASSERT_EQ(r.exit_code, 42);
    ASSERT_STREQ(th_output_str(&o, 2), "oops\n");
    th_output_free(&o);

    /* stdin through the port. */
    struct cdn_exec_spec spec = {.argv = ARGV("wc", "-c"), .argc = 2, .stdin_pipe = true};
    uint64_t id;
    ASSERT_OK(cdn_channel_exec_start(ch, &spec, th_collect, &o, &id, &err), err);
    static char data[300000];
    memset(data, 'x', sizeof(data));
    ASSERT_OK(cdn_channel_exec_stdin(ch, id, data, sizeof(data), 30000, &err), err);
    ASSERT_OK(cdn_channel_exec_stdin_close(ch, id, &err), err);
    ASSERT_OK(cdn_channel_exec_wait(ch, id, 30000, &r, &err), err);
    ASSERT_STREQ(th_output_str(&o, 1), "300000\n");
    th_output_free(&o);

    /* The guest enforces the command timeout on the whole group. */
    spec = (struct cdn_exec_spec){
        .argv = ARGV("sh", "-c", "sleep 100 & wait"), .argc = 3, .timeout_ms = 500};
    ASSERT_OK(cdn_channel_exec(ch, &spec, NULL, NULL, 30000, &r, &err), err);
    ASSERT_TRUE(r.timed_out);

    /* A tree in and out of the guest. */
    _cleanup_free_ char *dir = th_tmpdir();
    char src[4200], back[4200];
    snprintf(src, sizeof(src), "%s/src", dir);
    snprintf(back, sizeof(back), "%s/back", dir);
    th_sh("mkdir -p %s/sub %s && echo hi > %s/sub/f && ln -s sub/f %s/l && "
          "head -c 1000000 /dev/urandom > %s/blob",
          src, back, src, src, src);
    _cleanup_close_ int src_fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int back_fd = open(back, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_OK(cdn_channel_archive_put(ch, src_fd, NULL, 0, "/tmp/workspace", 60000, NULL, &err),
              err);
    r = th_run(ch, &o, ARGV("sh", "-c", "cat /tmp/workspace/l; echo more > /tmp/workspace/new"));
    ASSERT_STREQ(th_output_str(&o, 1), "hi\n");
    th_output_free(&o);
    ASSERT_OK(
        cdn_channel_archive_get(ch, "/tmp/workspace", NULL, 0, back_fd, NULL, 60000, NULL, &err),
        err);
    th_sh("diff -r --no-dereference -x new %s %s && grep -q more %s/new", src, back, back);
    th_rmtree(dir);

    /* A new host's hello sets the guest's clock (as after a restore from a saved state): the
     * clock is put back to 1971, the host leaves and comes back. */
    r = th_run(ch, &o, ARGV("sh", "-c", "date -u -s '1971-01-01 00:00:00' >/dev/null; date +%s"));
    ASSERT_TRUE(strtoll(th_output_str(&o, 1), NULL, 10) < 100000000);
    th_output_free(&o);
    cdn_channel_free(ch);
    ch = NULL;
    ASSERT_OK(th_vm_channel(&vm, 60000, &ch, &err), err);
    r = th_run(ch, &o, ARGV("date", "+%s"));
    long long guest = strtoll(th_output_str(&o, 1), NULL, 10), now = (long long)time(NULL);
    printf("  after a new host's hello the guest's clock is %+lld s off the host's\n", guest - now);
    ASSERT_TRUE(guest > now - 5 && guest < now + 5);
    th_output_free(&o);

    /* Shutdown: the agent exits, init powers off, QEMU ends by itself. */
    ASSERT_OK(cdn_channel_shutdown(ch, true, 10000, &err), err);
    cdn_channel_free(ch);
    ASSERT_TRUE(th_vm_wait_exit(&vm, 20000));
    th_vm_destroy(&vm);
}

TEST_T(guest_whose_agent_never_answers_fails_at_the_deadline, 120) {
    struct th_vm vm;
    th_vm_boot(&vm, "cordon.agent=off");
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    uint64_t t0 = th_now_ms();
    ASSERT_FAILS(th_vm_channel(&vm, 8000, &ch, &err), err,
                 "vm test: agent did not answer hello within 8000 ms");
    uint64_t took = th_now_ms() - t0;
    ASSERT_TRUE(took >= 8000 && took < 11000);
    ASSERT_EQ(cdn_err_code(err), ETIMEDOUT);
    /* The console (kept as evidence) says why. */
    _cleanup_free_ char *console = th_read_file(vm.console);
    ASSERT_CONTAINS(console, "cordon-init: agent disabled on the kernel command line");
    cdn_err_free(err);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s", vm.dir);
    th_vm_destroy(&vm);
    ASSERT_TRUE(access(dir, F_OK) < 0);
}
