/* SPDX-License-Identifier: Apache-2.0 */
/* A hostile guest answering the host's request for /workspace with archives no honest agent
 * sends: a path climbing out with "..", a symlink escaping the root, 100 000 tiny files, more
 * bytes than the cap, a .git. Each must end the transfer with an error naming the entry, and
 * nothing may be written outside the result folder. The guest is a forked process speaking raw
 * frames, honouring the host's credit like a real agent would. */
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "tar_build.h"
#include "task_transfer.h"
#include "test.h"
#include "workspace.h"

typedef void (*tar_fn)(struct cdn_buf *b);

static void send_data(int fd, uint64_t stream, const uint8_t *p, size_t n, bool eof) {
    CordonAgent__ArchiveData d = CORDON_AGENT__ARCHIVE_DATA__INIT;
    d.data.data = (uint8_t *)p;
    d.data.len = n;
    d.eof = eof;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = stream;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA;
    env.archive_data = &d;
    th_send_env(fd, &env);
}

/* Handshake, then the archive for the first ArchiveGet, sent within credit. */
static void guest(int fd, tar_fn build) {
    struct cdn_frame_decoder *dec = NULL;
    cdn_frame_decoder_new(16u << 20, &dec);
    cdn_envelope *env;
    uint64_t credit = 0, stream = 0;
    if (th_recv_env(fd, dec, 5000, &env) != 1 ||
        env->body_case != CORDON_AGENT__ENVELOPE__BODY_HELLO)
        _exit(2);
    credit = env->hello->stream_window;
    CordonAgent__Hello h = CORDON_AGENT__HELLO__INIT;
    h.protocol_version = CDN_PROTOCOL_VERSION;
    h.software_version = (char *)"hostile-result";
    h.max_frame_bytes = 1u << 20;
    h.stream_window = 1u << 20;
    h.max_streams = 16;
    cdn_envelope he = CORDON_AGENT__ENVELOPE__INIT;
    he.body_case = CORDON_AGENT__ENVELOPE__BODY_HELLO;
    he.hello = &h;
    th_send_env(fd, &he);
    while (!stream && th_recv_env(fd, dec, 5000, &env) == 1)
        if (env->body_case == CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_GET)
            stream = env->stream;
    if (!stream)
        _exit(3);
    struct cdn_buf b = {0};
    build(&b);
    const uint8_t *p = cdn_buf_head(&b);
    size_t left = cdn_buf_len(&b);
    while (left > 0) {
        while (credit == 0) { /* wait for the host to grant more, or to cancel */
            if (th_recv_env(fd, dec, 5000, &env) != 1)
                _exit(0);
            if (env->stream == stream && env->body_case == CORDON_AGENT__ENVELOPE__BODY_CREDIT)
                credit += env->credit->bytes;
            if (env->stream == stream && env->body_case == CORDON_AGENT__ENVELOPE__BODY_ERROR)
                _exit(0); /* refused: what a real agent does is stop */
        }
        size_t n = left < 65536 ? left : 65536;
        if (n > credit)
            n = (size_t)credit;
        send_data(fd, stream, p, n, n == left);
        p += n;
        left -= n;
        credit -= n;
    }
    pause();
    _exit(0);
}

static void t_dotdot(struct cdn_buf *b) {
    th_tar_add(b, "ok.txt", '0', NULL, "fine", 4);
    th_tar_add(b, "a/../../outside.txt", '0', NULL, "evil", 4);
    th_tar_end(b);
}
static void t_symlink_escape(struct cdn_buf *b) {
    th_tar_add(b, "src", '5', NULL, NULL, 0);
    th_tar_add(b, "src/link", '2', "../../../etc", NULL, 0);
    th_tar_add(b, "src/link/passwd", '0', NULL, "root", 4);
    th_tar_end(b);
}
static void t_tiny_files(struct cdn_buf *b) {
    char name[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(name, sizeof(name), "f/%06d", i);
        th_tar_add(b, name, '0', NULL, NULL, 0);
    }
    th_tar_end(b);
}
static void t_too_big(struct cdn_buf *b) {
    th_tar_add(b, "small", '0', NULL, "x", 1);
    th_tar_add(b, "big.bin", '0', NULL, NULL, 3u << 20);
    th_tar_end(b);
}
static void t_git(struct cdn_buf *b) {
    th_tar_add(b, "sub", '5', NULL, NULL, 0);
    th_tar_add(b, "sub/.git", '5', NULL, NULL, 0);
    th_tar_add(b, "sub/.git/config", '0', NULL, "[core]\n", 7);
    th_tar_end(b);
}

static void check(tar_fn build, const struct cdn_archive_limits *given, const char *needle) {
    _cleanup_free_ char *tmp = th_tmpdir();
    char result[4300];
    snprintf(result, sizeof(result), "%s/task/result", tmp);
    th_sh("mkdir -p %s", result);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        guest(sv[1], build);
    }
    close(sv[1]);
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    struct cdn_channel_opts o = {.name = "hostile", .handshake_timeout_ms = 5000};
    ASSERT_OK(cdn_channel_open(sv[0], &o, &ch, &err), err);
    struct cdn_archive_limits lim = given ? *given : (struct cdn_archive_limits){0};
    task_result_limits_fill(&lim);
    struct cdn_workspace_listing listing = {0};
    ASSERT_FAILS(task_collect_workspace(ch, result, &lim, &listing, 60000, &err), err, needle);
    cdn_workspace_listing_free(&listing);
    ASSERT_CONTAINS(cdn_err_msg(err), "collecting the workspace");
    cdn_err_free(err);
    /* Nothing beside the result folder: the task folder holds only it, the test folder only it. */
    th_sh("test \"$(ls -A %s)\" = task && test \"$(ls -A %s/task)\" = result", tmp, tmp);
    th_sh("test ! -e %s/task/outside.txt && test ! -e %s/outside.txt", tmp, tmp);
    cdn_channel_free(ch);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    th_rmtree(tmp);
}

TEST(a_path_climbing_out_is_refused) { check(t_dotdot, NULL, "a/../../outside.txt"); }

TEST(a_symlink_escaping_the_root_is_refused) { check(t_symlink_escape, NULL, "'src/link'"); }

TEST(a_hundred_thousand_tiny_files_are_refused) {
    check(t_tiny_files, NULL, "more than 50000 entries");
}

TEST(more_bytes_than_the_cap_are_refused) {
    struct cdn_archive_limits lim = {.max_total_bytes = 1u << 20};
    check(t_too_big, &lim, "big.bin");
}

TEST(a_git_folder_is_refused) { check(t_git, NULL, "refused entry 'sub/.git'"); }
