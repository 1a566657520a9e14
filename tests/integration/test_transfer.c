/* SPDX-License-Identifier: Apache-2.0 */
/* Files and trees through a real cordon-agent: round trips, atomic replace, bounds, and archives
 * refused on either side of the channel. */
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"

__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...) {
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        FAIL("out of memory");
    va_end(ap);
    return s;
}

static int to_buf(void *ud, const uint8_t *p, size_t n) { return cdn_buf_append(ud, p, n); }

TEST(file_write_then_read_round_trip) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *path = fmt("%s/sub/deeper/data.bin", dir); /* folders made on the way */
    _cleanup_free_ char *sub = fmt("%s/sub/deeper", dir);
    size_t len = 5u << 20; /* beyond one window: write credit must flow back */
    _cleanup_free_ uint8_t *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 31 + (i >> 13));
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_file_write(ch, path, 0600, data, len, 30000, &err), err);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_size, (long long)len);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(stat(sub, &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    struct cdn_buf got = {0};
    ASSERT_OK(cdn_channel_file_read(ch, path, 0, to_buf, &got, 30000, &err), err);
    ASSERT_EQ(cdn_buf_len(&got), len);
    ASSERT_TRUE(memcmp(cdn_buf_head(&got), data, len) == 0);
    cdn_buf_free(&got);
    /* Empty file: still one eof frame. */
    ASSERT_OK(cdn_channel_file_write(ch, path, 0, "", 0, 5000, &err), err);
    ASSERT_OK(cdn_channel_file_read(ch, path, 0, to_buf, &got, 5000, &err), err);
    ASSERT_EQ(cdn_buf_len(&got), 0);
    cdn_buf_free(&got);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(file_write_replaces_atomically) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *path = fmt("%s/config", dir);
    th_write_file(path, "old contents\n", 0644);
    struct stat before, after;
    ASSERT_EQ(stat(path, &before), 0);
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_file_write(ch, path, 0644, "new\n", 4, 5000, &err), err);
    ASSERT_EQ(stat(path, &after), 0);
    /* A rename, not an in-place rewrite: a reader never sees a half-written file. */
    ASSERT_TRUE(before.st_ino != after.st_ino);
    _cleanup_free_ char *content = th_read_file(path);
    ASSERT_STREQ(content, "new\n");
    /* No temp file left beside it. */
    th_sh("test $(ls -A %s | wc -l) -eq 1", dir);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(file_read_is_bounded_and_errors_are_named) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *path = fmt("%s/big", dir);
    th_sh("head -c 100000 /dev/zero > %s", path);
    struct cdn_buf got = {0};
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_channel_file_read(ch, path, 1000, to_buf, &got, 5000, &err), err,
                 "is larger than 1000 bytes");
    ASSERT_LE(cdn_buf_len(&got), 1000);
    cdn_buf_free(&got);
    ASSERT_OK(cdn_channel_file_read(ch, path, 100000, to_buf, &got, 5000, &err), err);
    ASSERT_EQ(cdn_buf_len(&got), 100000);
    cdn_buf_free(&got);
    _cleanup_free_ char *missing = fmt("%s/missing", dir);
    ASSERT_FAILS(cdn_channel_file_read(ch, missing, 0, to_buf, &got, 5000, &err), err,
                 "No such file or directory");
    ASSERT_EQ(cdn_err_code(err), ENOENT);
    ASSERT_FAILS(cdn_channel_file_read(ch, dir, 0, to_buf, &got, 5000, &err), err,
                 "is not a regular file");
    ASSERT_OK(cdn_channel_ping(ch, 5000, &err), err);
    cdn_err_free(err);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

static void make_tree(const char *src) {
    _cleanup_free_ char *f1 = fmt("%s/README", src);
    _cleanup_free_ char *f2 = fmt("%s/bin/tool", src);
    _cleanup_free_ char *f3 = fmt("%s/.git/HEAD", src);
    th_write_file(f1, "read me\n", 0644);
    th_write_file(f2, "#!/bin/sh\nexit 0\n", 0755);
    th_write_file(f3, "ref: refs/heads/main\n", 0644);
    th_sh("mkdir -p %s/empty/nested && ln -s ../README %s/bin/readme-link && "
          "head -c 3000000 /dev/urandom > %s/blob",
          src, src, src);
}

TEST(archive_put_and_get_round_trip) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *src = fmt("%s/src", dir);
    _cleanup_free_ char *guest = fmt("%s/guest/workspace", dir);
    _cleanup_free_ char *back = fmt("%s/back", dir);
    mkdir(src, 0755);
    mkdir(back, 0755);
    make_tree(src);
    _cleanup_close_ int src_fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int back_fd = open(back, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cdn_err *err = NULL;
    uint64_t put_entries = 0, get_entries = 0;
    ASSERT_OK(cdn_channel_archive_put(ch, src_fd, NULL, 0, guest, 30000, &put_entries, &err), err);
    ASSERT_EQ(put_entries, 9);
    th_sh("diff -r --no-dereference %s %s", src, guest);
    /* Back to the host without .git, as a workspace comes back for the diff. */
    const char *ex[] = {".git"};
    ASSERT_OK(cdn_channel_archive_get(ch, guest, ex, 1, back_fd, NULL, 30000, &get_entries, &err),
              err);
    ASSERT_EQ(get_entries, 7);
    th_sh("test ! -e %s/.git", back);
    th_sh("diff -r --no-dereference -x .git %s %s", src, back);
    th_sh("test -x %s/bin/tool && test -L %s/bin/readme-link", back, back);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

/* The guest offers a tree with a symlink to the host's /etc: the host's reader refuses it, names
 * it, and nothing lands outside the destination. */
TEST(archive_get_refuses_a_hostile_guest_tree) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *guest = fmt("%s/guest", dir);
    _cleanup_free_ char *back = fmt("%s/back", dir);
    mkdir(back, 0755);
    th_sh("mkdir -p %s/a && echo ok > %s/a/fine && ln -s /etc %s/a/etc-link && mkfifo %s/a/fifo",
          guest, guest, guest, guest);
    _cleanup_close_ int back_fd = open(back, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_channel_archive_get(ch, guest, NULL, 0, back_fd, NULL, 30000, NULL, &err), err,
                 "'a/etc-link': symlink points to absolute path '/etc'");
    ASSERT_EQ(cdn_err_code(err), EPERM);
    th_sh("test ! -e %s/a/etc-link", back);
    /* The channel survives a refused transfer. */
    ASSERT_OK(cdn_channel_ping(ch, 5000, &err), err);
    /* Limits apply to what comes back. */
    th_sh("rm %s/a/etc-link", guest);
    struct cdn_archive_limits lim = {.max_entries = 1};
    ASSERT_FAILS(cdn_channel_archive_get(ch, guest, NULL, 0, back_fd, &lim, 30000, NULL, &err), err,
                 "more than 1 entries");
    cdn_err_free(err);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

/* The host sends a tree the agent must refuse: the agent names the entry. */
TEST(archive_put_refused_by_the_agent) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *src = fmt("%s/src", dir);
    _cleanup_free_ char *guest = fmt("%s/guest", dir);
    th_sh("mkdir -p %s/d && ln -s ../../../../outside %s/d/up", src, src);
    _cleanup_close_ int src_fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_channel_archive_put(ch, src_fd, NULL, 0, guest, 30000, NULL, &err), err,
                 "'d/up': symlink target '../../../../outside' points outside the root");
    ASSERT_OK(cdn_channel_ping(ch, 5000, &err), err);
    cdn_err_free(err);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

/* Ctrl-C during a long transfer: the channel's cancel flag ends the wait within its slice. */
static volatile sig_atomic_t cancel_flag;
static void on_alarm(int sig) {
    (void)sig;
    cancel_flag = 1;
}

TEST(a_cancelled_transfer_ends_at_once) {
    struct th_agent a;
    struct cdn_channel_opts o = {.cancel = &cancel_flag};
    struct cdn_channel *ch = th_channel(&a, &o);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *guest = fmt("%s/guest", dir);
    _cleanup_free_ char *back = fmt("%s/back", dir);
    /* 8 GiB of holes: far more than the 300 ms before the "Ctrl-C" can move */
    th_sh("mkdir -p %s %s && truncate -s 8G %s/huge", guest, back, guest);
    _cleanup_close_ int back_fd = open(back, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART, as in the CLI */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {.it_value = {.tv_usec = 300000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct cdn_archive_limits lim = {.max_total_bytes = 16ull << 30};
    cdn_err *err = NULL;
    uint64_t t0 = th_now_ms();
    ASSERT_FAILS(cdn_channel_archive_get(ch, guest, NULL, 0, back_fd, &lim, 600000, NULL, &err),
                 err, "cancelled");
    ASSERT_EQ(cdn_err_code(err), EINTR);
    uint64_t took = th_now_ms() - t0;
    printf("  cancelled after %llu ms\n", (unsigned long long)took);
    ASSERT_TRUE(took < 3000);
    cdn_err_free(err);
    cdn_channel_free(ch);
    th_agent_kill(&a);
    th_rmtree(dir);
}

TEST(list_dir_describes_a_folder_in_name_order) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    _cleanup_free_ char *dir = th_tmpdir();
    _cleanup_free_ char *file = fmt("%s/b.txt", dir);
    th_write_file(file, "hello", 0640);
    th_sh("cd %s && mkdir a && ln -s b.txt link && mkfifo p && touch \"$(printf 'z\\377')\"", dir);
    struct cdn_dir_listing *l = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_list_dir(ch, dir, 0, 5000, &l, &err), err);
    ASSERT_EQ(l->n, 5);
    ASSERT_EQ(l->total, 5);
    ASSERT_TRUE(!l->truncated);
    const char *names[] = {"a", "b.txt", "link", "p", "z\377"};
    const enum cdn_dir_type types[] = {CDN_DIR_DIR, CDN_DIR_FILE, CDN_DIR_SYMLINK, CDN_DIR_OTHER,
                                       CDN_DIR_FILE};
    for (size_t i = 0; i < 5; i++) {
        ASSERT_STREQ(l->entries[i].name, names[i]);
        ASSERT_EQ(l->entries[i].type, types[i]);
    }
    ASSERT_EQ(l->entries[1].size, 5);
    ASSERT_EQ(l->entries[1].mode, 0640);
    struct stat st;
    ASSERT_EQ(lstat(file, &st), 0);
    ASSERT_EQ(l->entries[1].mtime_ns,
              (long long)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
    ASSERT_STREQ(l->entries[2].link_target, "b.txt"); /* the link itself, not followed */
    ASSERT_TRUE(l->entries[1].link_target == NULL);
    cdn_dir_listing_free(l);
    /* Fewer than there are: the first ones by name, and how many there were. */
    ASSERT_OK(cdn_channel_list_dir(ch, dir, 2, 5000, &l, &err), err);
    ASSERT_EQ(l->n, 2);
    ASSERT_TRUE(l->truncated);
    ASSERT_EQ(l->total, 5);
    ASSERT_STREQ(l->entries[1].name, "b.txt");
    cdn_dir_listing_free(l);
    /* An empty folder: nothing, and nothing more. */
    _cleanup_free_ char *empty = fmt("%s/a", dir);
    ASSERT_OK(cdn_channel_list_dir(ch, empty, 0, 5000, &l, &err), err);
    ASSERT_EQ(l->n, 0);
    ASSERT_EQ(l->total, 0);
    ASSERT_TRUE(!l->truncated);
    cdn_dir_listing_free(l);
    /* Errors name the path; the channel goes on. */
    _cleanup_free_ char *missing = fmt("%s/missing", dir);
    ASSERT_FAILS(cdn_channel_list_dir(ch, missing, 0, 5000, &l, &err), err,
                 "No such file or directory");
    ASSERT_EQ(cdn_err_code(err), ENOENT);
    ASSERT_FAILS(cdn_channel_list_dir(ch, file, 0, 5000, &l, &err), err, "is not a folder");
    ASSERT_EQ(cdn_err_code(err), EINVAL);
    ASSERT_FAILS(cdn_channel_list_dir(ch, dir, CDN_DIR_MAX_ENTRIES + 1, 5000, &l, &err), err,
                 "at most 10000 entries");
    ASSERT_OK(cdn_channel_ping(ch, 5000, &err), err);
    cdn_err_free(err);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}

TEST(list_dir_of_a_large_folder_fits_one_frame) {
    struct th_agent a;
    struct cdn_channel_opts opts = {.name = "small frames", .max_frame_bytes = 64u << 10};
    struct cdn_channel *ch = th_channel(&a, &opts);
    _cleanup_free_ char *dir = th_tmpdir();
    /* 3000 names of 200 bytes: about 700 KiB of listing, more than a 64 KiB frame holds. */
    char zeros[197];
    memset(zeros, '0', 196);
    zeros[196] = '\0';
    for (int i = 1000; i < 4000; i++) {
        _cleanup_free_ char *p = fmt("%s/%d%s", dir, i, zeros);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
    }
    struct cdn_dir_listing *l = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_list_dir(ch, dir, CDN_DIR_MAX_ENTRIES, 5000, &l, &err), err);
    ASSERT_TRUE(l->truncated);
    ASSERT_EQ(l->total, 3000);
    ASSERT_TRUE(l->n > 100 && l->n < 3000);
    for (size_t i = 0; i < l->n; i++) { /* the first ones, in order */
        char want[8];
        snprintf(want, sizeof(want), "%zu", 1000 + i);
        ASSERT_TRUE(strncmp(l->entries[i].name, want, 4) == 0);
        ASSERT_EQ(strlen(l->entries[i].name), 200);
    }
    printf("  %zu of 3000 entries of 200 bytes in one 64 KiB frame\n", l->n);
    cdn_dir_listing_free(l);
    cdn_err_free(err);
    th_rmtree(dir);
    cdn_channel_free(ch);
    th_agent_kill(&a);
}
