/* SPDX-License-Identifier: Apache-2.0 */
/* Exec through a real cordon-agent over a socketpair: exit codes, per-fd output, stdin, signals,
 * timeouts that kill a whole process tree, concurrency, limits and spawn errors. */
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "cleanup.h"
#include "harness.h"
#include "test.h"

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

TEST(echo_false_and_exit_42) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    struct cdn_exec_result r = th_run(ch, &o, ARGV("echo", "hello", "world"));
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_EQ(r.signal, 0);
    ASSERT_STREQ(th_output_str(&o, 1), "hello world\n");
    ASSERT_STREQ(th_output_str(&o, 2), "");
    ASSERT_TRUE(r.pid > 0);
    ASSERT_EQ(r.stdout_bytes, 12);
    r = th_run(ch, &o, ARGV("false"));
    ASSERT_EQ(r.exit_code, 1);
    r = th_run(ch, &o, ARGV("sh", "-c", "exit 42"));
    ASSERT_EQ(r.exit_code, 42);
    ASSERT_TRUE(!r.timed_out && !r.output_truncated);
    th_output_free(&o);
    cdn_channel_free(ch);
    ASSERT_EQ(th_agent_wait(&a, 5000), 0); /* the agent exits cleanly when the host hangs up */
}

TEST(stdout_and_stderr_stay_apart) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    struct cdn_exec_result r =
        th_run(ch, &o,
               ARGV("sh", "-c", "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; exit 3"));
    ASSERT_EQ(r.exit_code, 3);
    ASSERT_STREQ(th_output_str(&o, 1), "out1\nout2\nout3\nout4\nout5\n");
    ASSERT_STREQ(th_output_str(&o, 2), "err1\nerr2\nerr3\nerr4\nerr5\n");
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(stdin_round_trip) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    struct cdn_exec_spec spec = {
        .argv = ARGV("sh", "-c", "wc -c; cat >&2"), .argc = 3, .stdin_pipe = true};
    spec.argv = ARGV("cat");
    spec.argc = 1;
    uint64_t id;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_exec_start(ch, &spec, th_collect, &o, &id, &err), err);
    /* More than one window's worth, so stdin credit has to come back from the agent. */
    size_t total = 9u << 20;
    _cleanup_free_ uint8_t *data = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (uint8_t)('a' + i % 26);
    ASSERT_OK(cdn_channel_exec_stdin(ch, id, data, total, 30000, &err), err);
    ASSERT_OK(cdn_channel_exec_stdin_close(ch, id, &err), err);
    struct cdn_exec_result r;
    ASSERT_OK(cdn_channel_exec_wait(ch, id, 30000, &r, &err), err);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_EQ(cdn_buf_len(&o.fd[1]), total);
    ASSERT_TRUE(memcmp(cdn_buf_head(&o.fd[1]), data, total) == 0);
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(signal_reaches_the_command) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    struct cdn_exec_spec spec = {.argv = ARGV("sh", "-c",
                                              "trap 'echo got-term; exit 7' TERM; echo ready; "
                                              "while :; do sleep 0.05; done"),
                                 .argc = 3};
    uint64_t id;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_exec_start(ch, &spec, th_collect, &o, &id, &err), err);
    uint64_t end = th_now_ms() + 10000;
    while (!strstr(th_output_str(&o, 1), "ready") && th_now_ms() < end)
        ASSERT_OK(cdn_channel_poll(ch, 100, &err), err);
    ASSERT_OK(cdn_channel_exec_signal(ch, id, SIGTERM, &err), err);
    struct cdn_exec_result r;
    ASSERT_OK(cdn_channel_exec_wait(ch, id, 10000, &r, &err), err);
    ASSERT_EQ(r.exit_code, 7);
    ASSERT_CONTAINS(th_output_str(&o, 1), "got-term");
    /* A signal that kills: reported as such. */
    spec.argv = ARGV("sleep", "30");
    spec.argc = 2;
    ASSERT_OK(cdn_channel_exec_start(ch, &spec, th_collect, &o, &id, &err), err);
    ASSERT_OK(cdn_channel_exec_signal(ch, id, SIGKILL, &err), err);
    ASSERT_OK(cdn_channel_exec_wait(ch, id, 10000, &r, &err), err);
    ASSERT_EQ(r.signal, SIGKILL);
    ASSERT_EQ(r.exit_code, 128 + SIGKILL);
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

static bool pid_alive(pid_t pid) {
    if (kill(pid, 0) < 0)
        return false;
    /* A zombie is dead for our purposes, and so is a task being reaped ('X'): a check can
     * see 'Z', then 'X' while the parent's wait releases it. */
    char path[64], state = '?';
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
        state = '?';
    fclose(f);
    return state != 'Z' && state != 'X';
}

TEST(timeout_kills_the_whole_process_tree) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    /* The shell starts a grandchild sleep and reports its pid, then waits. */
    struct cdn_exec_spec spec = {
        .argv = ARGV("sh", "-c", "sleep 300 & echo $!; wait"), .argc = 3, .timeout_ms = 500};
    struct cdn_exec_result r;
    cdn_err *err = NULL;
    uint64_t t0 = th_now_ms();
    ASSERT_OK(cdn_channel_exec(ch, &spec, th_collect, &o, 10000, &r, &err), err);
    ASSERT_TRUE(r.timed_out);
    ASSERT_EQ(r.signal, SIGKILL);
    ASSERT_TRUE(th_now_ms() - t0 < 5000);
    pid_t grandchild = (pid_t)atoi(th_output_str(&o, 1));
    ASSERT_TRUE(grandchild > 0);
    uint64_t end = th_now_ms() + 3000;
    while (pid_alive(grandchild) && th_now_ms() < end)
        usleep(10000);
    if (pid_alive(grandchild))
        FAIL("grandchild sleep %d survived the timeout", grandchild);
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

struct many {
    struct th_output out[50];
};

TEST(fifty_concurrent_commands_on_one_channel) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    static struct many m;
    uint64_t ids[50];
    cdn_err *err = NULL;
    char scripts[50][96];
    for (int i = 0; i < 50; i++) {
        snprintf(scripts[i], sizeof(scripts[i]),
                 "i=0; while [ $i -lt 200 ]; do echo cmd%d-$i; i=$((i+1)); done; exit %d", i,
                 i % 7);
        const char *argv[] = {"sh", "-c", scripts[i], NULL};
        struct cdn_exec_spec spec = {.argv = argv, .argc = 3};
        ASSERT_OK(cdn_channel_exec_start(ch, &spec, th_collect, &m.out[i], &ids[i], &err), err);
    }
    for (int i = 49; i >= 0; i--) {
        struct cdn_exec_result r;
        ASSERT_OK(cdn_channel_exec_wait(ch, ids[i], 60000, &r, &err), err);
        ASSERT_EQ(r.exit_code, i % 7);
        const char *s = th_output_str(&m.out[i], 1);
        char first[32], last[32];
        snprintf(first, sizeof(first), "cmd%d-0\n", i);
        snprintf(last, sizeof(last), "cmd%d-199\n", i);
        ASSERT_TRUE(strncmp(s, first, strlen(first)) == 0);
        ASSERT_CONTAINS(s, last);
        size_t lines = 0;
        for (const char *p = s; *p; p++)
            lines += *p == '\n';
        ASSERT_EQ(lines, 200);
        th_output_free(&m.out[i]);
    }
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(output_limit_truncates_and_says_so) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    struct cdn_exec_spec spec = {.argv =
                                     ARGV("sh", "-c", "head -c 100000 /dev/zero; echo tail >&2"),
                                 .argc = 3,
                                 .output_limit = 1000};
    struct cdn_exec_result r;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_exec(ch, &spec, th_collect, &o, 10000, &r, &err), err);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_TRUE(r.output_truncated);
    ASSERT_EQ(cdn_buf_len(&o.fd[1]), 1000);
    ASSERT_EQ(r.stdout_bytes, 100000);
    ASSERT_STREQ(th_output_str(&o, 2), "tail\n");
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(spawn_errors_name_what_failed) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct cdn_exec_result r;
    cdn_err *err = NULL;
    struct cdn_exec_spec spec = {.argv = ARGV("no-such-program-xyz"), .argc = 1};
    ASSERT_FAILS(cdn_channel_exec(ch, &spec, NULL, NULL, 5000, &r, &err), err,
                 "exec 'no-such-program-xyz': No such file or directory");
    ASSERT_EQ(cdn_err_code(err), ENOENT);
    spec = (struct cdn_exec_spec){.argv = ARGV("true"), .argc = 1, .cwd = "/no/such/dir"};
    ASSERT_FAILS(cdn_channel_exec(ch, &spec, NULL, NULL, 5000, &r, &err), err,
                 "cwd '/no/such/dir'");
    const char *bad_env[] = {"NOEQUALS"};
    spec = (struct cdn_exec_spec){.argv = ARGV("true"), .argc = 1, .env = bad_env, .envc = 1};
    ASSERT_FAILS(cdn_channel_exec(ch, &spec, NULL, NULL, 5000, &r, &err), err, "not KEY=VALUE");
    /* The channel is still fine afterwards. */
    ASSERT_OK(cdn_channel_ping(ch, 5000, &err), err);
    cdn_err_free(err);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(env_cwd_pty_and_rlimits) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    struct cdn_exec_result r;
    cdn_err *err = NULL;
    const char *env[] = {"CORDON_TEST=value-1", "PATH=/usr/bin:/bin"};
    struct cdn_exec_spec spec = {.argv = ARGV("sh", "-c", "echo $CORDON_TEST; pwd"),
                                 .argc = 3,
                                 .env = env,
                                 .envc = 2,
                                 .cwd = "/usr"};
    ASSERT_OK(cdn_channel_exec(ch, &spec, th_collect, &o, 5000, &r, &err), err);
    ASSERT_STREQ(th_output_str(&o, 1), "value-1\n/usr\n");
    th_output_free(&o);
    /* With a pty, the command sees a terminal on stdout and stderr, both reported on fd 1. */
    spec = (struct cdn_exec_spec){.argv = ARGV("sh", "-c",
                                               "test -t 1 && test -t 2 && echo tty; "
                                               "stty size </dev/tty; echo err >&2"),
                                  .argc = 3,
                                  .pty = true,
                                  .pty_rows = 33,
                                  .pty_cols = 101};
    memset(&o, 0, sizeof(o));
    ASSERT_OK(cdn_channel_exec(ch, &spec, th_collect, &o, 5000, &r, &err), err);
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_CONTAINS(th_output_str(&o, 1), "tty");
    ASSERT_CONTAINS(th_output_str(&o, 1), "33 101");
    ASSERT_CONTAINS(th_output_str(&o, 1), "err");
    ASSERT_EQ(cdn_buf_len(&o.fd[2]), 0);
    th_output_free(&o);
    /* RLIMIT_FSIZE: writing past it fails (SIGXFSZ kills the writer). */
    struct cdn_rlimit rl = {CORDON_AGENT__RLIMIT__RLIMIT_FILE_BYTES, 4096, 4096};
    _cleanup_free_ char *dir = th_tmpdir();
    char script[512];
    snprintf(script, sizeof(script), "head -c 100000 /dev/zero > %s/big", dir);
    const char *argv[] = {"sh", "-c", script, NULL};
    spec = (struct cdn_exec_spec){.argv = argv, .argc = 3, .rlimits = &rl, .n_rlimits = 1};
    ASSERT_OK(cdn_channel_exec(ch, &spec, th_collect, &o, 5000, &r, &err), err);
    ASSERT_TRUE(r.exit_code != 0);
    _cleanup_free_ char *path = NULL;
    asprintf(&path, "%s/big", dir);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_LE(st.st_size, 4096);
    th_rmtree(dir);
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(host_deadline_cancels_the_command) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    struct cdn_exec_spec spec = {.argv = ARGV("sh", "-c", "echo $$; exec sleep 300"), .argc = 3};
    struct cdn_exec_result r;
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_channel_exec(ch, &spec, th_collect, &o, 300, &r, &err), err,
                 "did not finish in time");
    ASSERT_EQ(cdn_err_code(err), ETIMEDOUT);
    pid_t pid = (pid_t)atoi(th_output_str(&o, 1));
    ASSERT_TRUE(pid > 0);
    uint64_t end = th_now_ms() + 3000;
    while (pid_alive(pid) && th_now_ms() < end)
        ASSERT_OK(cdn_channel_poll(ch, 20, &err), err);
    ASSERT_TRUE(!pid_alive(pid));
    ASSERT_OK(cdn_channel_ping(ch, 5000, &err), err);
    cdn_err_free(err);
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(runs_as_the_requested_user) {
    if (geteuid() != 0)
        SKIP("needs root to switch users");
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    struct th_output o = {0};
    const uint32_t groups[] = {65533};
    struct cdn_exec_spec spec = {.argv = ARGV("sh", "-c", "id -u; id -g; id -G; touch /root/x"),
                                 .argc = 3,
                                 .as_user = true,
                                 .uid = 65534,
                                 .gid = 65534,
                                 .groups = groups,
                                 .n_groups = 1};
    struct cdn_exec_result r;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_exec(ch, &spec, th_collect, &o, 5000, &r, &err), err);
    ASSERT_STREQ(th_output_str(&o, 1), "65534\n65534\n65534 65533\n");
    ASSERT_TRUE(r.exit_code != 0); /* nobody cannot write to /root */
    ASSERT_CONTAINS(th_output_str(&o, 2), "Permission denied");
    /* A cwd the user may not enter is refused as that user, with the reason. */
    spec.argv = ARGV("true");
    spec.argc = 1;
    spec.cwd = "/root";
    ASSERT_FAILS(cdn_channel_exec(ch, &spec, NULL, NULL, 5000, &r, &err), err,
                 "cwd '/root': Permission denied");
    cdn_err_free(err);
    th_output_free(&o);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}
