/* SPDX-License-Identifier: Apache-2.0 */
/* Archive codec: round trips through writer, reader and extractor; interop with GNU tar; and each
 * hostile archive the reader must refuse, with the entry and reason named. */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "archive.h"
#include "archive_tar.h"
#include "buf.h"
#include "cleanup.h"
#include "harness.h"
#include "tar_build.h"
#include "test.h"

struct recorder {
    char log[8192];
};

static int rec_entry(void *ud, const struct cdn_archive_entry *e, cdn_err **err) {
    (void)err;
    struct recorder *r = ud;
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof(r->log) - n, "%c:%s%s%s:%o;",
             e->type == CDN_ARCHIVE_DIR       ? 'd'
             : e->type == CDN_ARCHIVE_SYMLINK ? 'l'
                                              : 'f',
             e->path, e->link ? "->" : "", e->link ? e->link : "", e->mode);
    return 0;
}
static int rec_data(void *ud, const uint8_t *p, size_t n, cdn_err **err) {
    (void)ud, (void)p, (void)n, (void)err;
    return 0;
}
static int rec_end(void *ud, cdn_err **err) {
    (void)ud, (void)err;
    return 0;
}

/* Feeds the whole archive (in 100-byte pieces, to cross block boundaries) and finishes. */
static int read_archive(const struct cdn_buf *b, const struct cdn_archive_limits *lim,
                        struct recorder *rec, cdn_err **err) {
    struct cdn_archive_sink sink = {rec_entry, rec_data, rec_end, rec};
    _cleanup_(cdn_archive_reader_freep) struct cdn_archive_reader *r = NULL;
    ASSERT_EQ(cdn_archive_reader_new(lim, &sink, &r), 0);
    for (size_t at = 0; at < cdn_buf_len(b); at += 100) {
        size_t n = cdn_buf_len(b) - at < 100 ? cdn_buf_len(b) - at : 100;
        int ret = cdn_archive_reader_feed(r, cdn_buf_head(b) + at, n, err);
        if (ret < 0)
            return ret;
    }
    return cdn_archive_reader_finish(r, err);
}

/* ---- refusals, table-driven ---- */

struct refusal {
    const char *name;
    void (*build)(struct cdn_buf *b);
    struct cdn_archive_limits limits;
    const char *message;
};

static void b_absolute(struct cdn_buf *b) { th_tar_add(b, "/etc/passwd", '0', NULL, "x", 1); }
static void b_dotdot(struct cdn_buf *b) { th_tar_add(b, "a/../../evil", '0', NULL, "x", 1); }
static void b_under_symlink(struct cdn_buf *b) {
    th_tar_add(b, "dir", '5', NULL, NULL, 0);
    th_tar_add(b, "dir/link", '2', ".", NULL, 0);
    th_tar_add(b, "dir/link/file", '0', NULL, "x", 1);
}
static void b_link_absolute(struct cdn_buf *b) { th_tar_add(b, "l", '2', "/etc/shadow", NULL, 0); }
static void b_link_escapes(struct cdn_buf *b) {
    th_tar_add(b, "a/b/l", '2', "../../../outside", NULL, 0);
}
static void b_link_dotdot_after_name(struct cdn_buf *b) {
    th_tar_add(b, "a/l", '2', "x/../../..", NULL, 0);
}
static void b_hardlink(struct cdn_buf *b) { th_tar_add(b, "h", '1', "etc/passwd", NULL, 0); }
static void b_chardev(struct cdn_buf *b) { th_tar_add(b, "null", '3', NULL, NULL, 0); }
static void b_blockdev(struct cdn_buf *b) { th_tar_add(b, "sda", '4', NULL, NULL, 0); }
static void b_fifo(struct cdn_buf *b) { th_tar_add(b, "fifo", '6', NULL, NULL, 0); }
static void b_big_file(struct cdn_buf *b) {
    th_tar_add(b, "small", '0', NULL, "abc", 3);
    th_tar_add(b, "big", '0', NULL, NULL, 2000);
}
static void b_many(struct cdn_buf *b) {
    for (int i = 0; i < 6; i++) {
        char n[16];
        snprintf(n, sizeof(n), "f%d", i);
        th_tar_add(b, n, '0', NULL, "x", 1);
    }
}
static void b_long_path(struct cdn_buf *b) {
    char p[300];
    memset(p, 'a', sizeof(p) - 1);
    p[sizeof(p) - 1] = '\0';
    th_tar_pax_path(b, p);
    th_tar_add(b, "ignored", '0', NULL, "x", 1);
}
static void b_deep(struct cdn_buf *b) { th_tar_add(b, "1/2/3/4/5/6/7/8/9", '0', NULL, "x", 1); }
static void b_bad_checksum(struct cdn_buf *b) {
    th_tar_add(b, "f", '0', NULL, "x", 1);
    b->data[b->head] = 'g'; /* the name changes, the checksum no longer matches */
}
static void b_truncated(struct cdn_buf *b) {
    th_tar_add(b, "f", '0', NULL, "0123456789", 10);
    b->tail -= 512; /* drop the data block, no end marker */
}
static void b_no_end(struct cdn_buf *b) { th_tar_add(b, "f", '0', NULL, "x", 1); }
static void b_huge_pax(struct cdn_buf *b) { th_tar_add(b, "PaxHeader", 'x', NULL, NULL, 1u << 20); }
static void b_unknown_type(struct cdn_buf *b) { th_tar_add(b, "s", 'S', NULL, NULL, 0); }

static const struct refusal refusals[] = {
    {"absolute", b_absolute, {0}, "archive entry 1 '/etc/passwd': absolute path"},
    {"dotdot", b_dotdot, {0}, "'a/../../evil': path has a '..' component"},
    {"under_symlink",
     b_under_symlink,
     {0},
     "entry 3 'dir/link/file': lies beneath symlink 'dir/link'"},
    {"link_absolute", b_link_absolute, {0}, "symlink points to absolute path '/etc/shadow'"},
    {"link_escapes",
     b_link_escapes,
     {0},
     "symlink target '../../../outside' points outside the root"},
    {"link_dotdot_after_name", b_link_dotdot_after_name, {0}, "has '..' after a name"},
    {"hardlink", b_hardlink, {0}, "'h': hardlinks are not accepted"},
    {"chardev", b_chardev, {0}, "'null': character devices are not accepted"},
    {"blockdev", b_blockdev, {0}, "'sda': block devices are not accepted"},
    {"fifo", b_fifo, {0}, "'fifo': FIFOs are not accepted"},
    {"total_bytes",
     b_big_file,
     {.max_total_bytes = 1000},
     "entry 2 'big': file of 2000 bytes exceeds"},
    {"entry_count", b_many, {.max_entries = 5}, "more than 5 entries"},
    {"path_length", b_long_path, {.max_path_bytes = 255}, "path is 299 bytes (limit 255)"},
    {"depth", b_deep, {.max_depth = 8}, "deeper than 8 components"},
    {"bad_checksum", b_bad_checksum, {0}, "header checksum mismatch"},
    {"truncated", b_truncated, {0}, "truncated"},
    {"no_end_marker", b_no_end, {0}, "without its end marker"},
    {"huge_pax_header", b_huge_pax, {0}, "'x' header of 1048576 bytes"},
    {"unknown_type", b_unknown_type, {0}, "unsupported entry type 'S'"},
};

TEST(hostile_archives_are_refused_with_entry_and_reason) {
    for (size_t i = 0; i < ELEMENTSOF(refusals); i++) {
        struct cdn_buf b = {0};
        refusals[i].build(&b);
        if (strcmp(refusals[i].name, "truncated") && strcmp(refusals[i].name, "no_end_marker"))
            th_tar_end(&b);
        struct recorder rec = {""};
        cdn_err *err = NULL;
        int r = read_archive(&b, &refusals[i].limits, &rec, &err);
        if (r >= 0)
            FAIL("case %s was accepted (%s)", refusals[i].name, rec.log);
        if (!strstr(cdn_err_msg(err), refusals[i].message))
            FAIL("case %s: \"%s\" lacks \"%s\"", refusals[i].name, cdn_err_msg(err),
                 refusals[i].message);
        cdn_err_free(err);
        cdn_buf_free(&b);
    }
}

TEST(safe_relative_forms_are_accepted) {
    struct cdn_buf b = {0};
    th_tar_add(&b, "./", '5', NULL, NULL, 0);
    th_tar_add(&b, "./a//b/", '5', NULL, NULL, 0);
    th_tar_add(&b, "a/b/up", '2', "../../top", NULL, 0);
    th_tar_add(&b, "a/b/same", '2', "./sibling/x", NULL, 0);
    th_tar_add(&b, "a/b/f", '0', NULL, "hi", 2);
    th_tar_end(&b);
    struct recorder rec = {""};
    cdn_err *err = NULL;
    ASSERT_OK(read_archive(&b, NULL, &rec, &err), err);
    ASSERT_STREQ(rec.log, "d:a/b:755;l:a/b/up->../../top:644;l:a/b/same->./sibling/x:644;"
                          "f:a/b/f:644;");
    cdn_buf_free(&b);
}

/* ---- round trips on disk ---- */

static void make_tree(const char *root) {
    char p[4096];
    snprintf(p, sizeof(p), "%s/src/hello.txt", root);
    th_write_file(p, "hello\n", 0644);
    snprintf(p, sizeof(p), "%s/src/bin/run.sh", root);
    th_write_file(p, "#!/bin/sh\necho run\n", 0755);
    snprintf(p, sizeof(p), "%s/src/empty", root);
    mkdir(p, 0750);
    snprintf(p, sizeof(p), "%s/src/zero-bytes", root);
    th_write_file(p, "", 0600);
    snprintf(p, sizeof(p), "%s/src/bin/link-to-hello", root);
    symlink("../hello.txt", p);
    /* A path longer than ustar's 255 and a name longer than 100: pax headers. */
    char deep[4096];
    snprintf(deep, sizeof(deep), "%s/src/%0120d/%0120d/%0110d.txt", root, 1, 2, 3);
    th_write_file(deep, "deep\n", 0644);
    /* 3 MiB of non-repeating bytes, so chunking bugs show. */
    snprintf(p, sizeof(p), "%s/src/blob", root);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t words = (3u << 20) / 4;
    _cleanup_free_ uint32_t *blob = malloc(words * 4);
    uint32_t x = 12345;
    for (size_t i = 0; i < words; i++)
        blob[i] = x = x * 1103515245u + 12345u;
    ASSERT_EQ(write(fd, blob, words * 4), (ssize_t)(words * 4));
}

static void archive_dir_to_buf(const char *dir, const char *const *ex, size_t n_ex,
                               struct cdn_buf *out) {
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    _cleanup_(cdn_archive_writer_freep) struct cdn_archive_writer *w = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_archive_writer_new(fd, ex, n_ex, &w, &err), err);
    for (;;) {
        ASSERT_EQ(cdn_buf_reserve(out, 7000), 0);
        ssize_t n = cdn_archive_writer_read(w, cdn_buf_tail(out), 7000, &err);
        ASSERT_OK(n, err);
        cdn_buf_advance(out, (size_t)n);
        if (n < 7000)
            break;
    }
}

/* Extracts the archive in b beneath dir (created if needed); returns the first failure. */
static int extract_buf(const struct cdn_buf *b, const char *dir, cdn_err **err) {
    mkdir(dir, 0755);
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_(cdn_archive_extractor_freep) struct cdn_archive_extractor *x = NULL;
    int r = cdn_archive_extractor_new(fd, &x, err);
    if (r < 0)
        return r;
    struct cdn_archive_sink sink;
    cdn_archive_extractor_sink(x, &sink);
    _cleanup_(cdn_archive_reader_freep) struct cdn_archive_reader *reader = NULL;
    ASSERT_EQ(cdn_archive_reader_new(NULL, &sink, &reader), 0);
    r = cdn_archive_reader_feed(reader, cdn_buf_head(b), cdn_buf_len(b), err);
    if (r >= 0)
        r = cdn_archive_reader_finish(reader, err);
    if (r >= 0)
        r = cdn_archive_extractor_finish(x, err);
    return r;
}

TEST(round_trip_preserves_files_dirs_symlinks_and_modes) {
    _cleanup_free_ char *root = th_tmpdir();
    make_tree(root);
    char src[4096], dst[4096];
    snprintf(src, sizeof(src), "%s/src", root);
    snprintf(dst, sizeof(dst), "%s/dst", root);
    struct cdn_buf b = {0};
    archive_dir_to_buf(src, NULL, 0, &b);
    cdn_err *err = NULL;
    ASSERT_OK(extract_buf(&b, dst, &err), err);
    /* diff -r compares contents and symlink targets; find -printf compares types and modes. */
    th_sh("diff -r --no-dereference %s %s", src, dst);
    th_sh("test \"$(cd %s && find . -printf '%%p %%y %%m\\n' | sort)\" = "
          "\"$(cd %s && find . -printf '%%p %%y %%m\\n' | sort)\"",
          src, dst);
    cdn_buf_free(&b);
    th_rmtree(root);
}

TEST(gnu_tar_reads_ours_and_we_read_gnu_tars) {
    _cleanup_free_ char *root = th_tmpdir();
    make_tree(root);
    char src[4096], path[4096], dst[4096];
    snprintf(src, sizeof(src), "%s/src", root);
    struct cdn_buf b = {0};
    archive_dir_to_buf(src, NULL, 0, &b);
    snprintf(path, sizeof(path), "%s/ours.tar", root);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_EQ(write(fd, cdn_buf_head(&b), cdn_buf_len(&b)), (ssize_t)cdn_buf_len(&b));
    snprintf(dst, sizeof(dst), "%s/by-gnu-tar", root);
    mkdir(dst, 0755);
    th_sh("tar -xpf %s -C %s", path, dst);
    th_sh("diff -r --no-dereference %s %s", src, dst);
    /* And GNU tar's own pax output (with ./ prefixes) through our reader. */
    snprintf(path, sizeof(path), "%s/gnu.tar", root);
    th_sh("tar --format=pax -cf %s -C %s .", path, src);
    _cleanup_free_ char *gnu = NULL;
    struct cdn_buf g = {0};
    _cleanup_close_ int gfd = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t chunk[65536];
    ssize_t n;
    while ((n = read(gfd, chunk, sizeof(chunk))) > 0)
        cdn_buf_append(&g, chunk, (size_t)n);
    snprintf(dst, sizeof(dst), "%s/from-gnu-tar", root);
    cdn_err *err = NULL;
    ASSERT_OK(extract_buf(&g, dst, &err), err);
    th_sh("diff -r --no-dereference %s %s", src, dst);
    cdn_buf_free(&b);
    cdn_buf_free(&g);
    th_rmtree(root);
}

TEST(excludes_skip_names_and_paths) {
    _cleanup_free_ char *root = th_tmpdir();
    char p[4096];
    snprintf(p, sizeof(p), "%s/.git/config", root);
    th_write_file(p, "secret", 0644);
    snprintf(p, sizeof(p), "%s/sub/.git/HEAD", root);
    th_write_file(p, "ref", 0644);
    snprintf(p, sizeof(p), "%s/sub/keep.c", root);
    th_write_file(p, "int x;", 0644);
    snprintf(p, sizeof(p), "%s/build/out.o", root);
    th_write_file(p, "obj", 0644);
    const char *ex[] = {".git", "build/*.o"};
    struct cdn_buf b = {0};
    archive_dir_to_buf(root, ex, 2, &b);
    struct recorder rec = {""};
    cdn_err *err = NULL;
    ASSERT_OK(read_archive(&b, NULL, &rec, &err), err);
    ASSERT_STREQ(rec.log, "d:build:755;d:sub:755;f:sub/keep.c:644;");
    cdn_buf_free(&b);
    th_rmtree(root);
}

/* The extractor must not follow a symlink that already exists in the destination. */
TEST(extractor_never_follows_existing_symlinks) {
    _cleanup_free_ char *root = th_tmpdir();
    char dst[4096], outside[4096], p[8400];
    snprintf(dst, sizeof(dst), "%s/dst", root);
    snprintf(outside, sizeof(outside), "%s/outside", root);
    mkdir(dst, 0755);
    mkdir(outside, 0755);
    snprintf(p, sizeof(p), "%s/escape", dst);
    ASSERT_EQ(symlink(outside, p), 0);
    struct cdn_buf b = {0};
    th_tar_add(&b, "escape/planted", '0', NULL, "gotcha", 6);
    th_tar_end(&b);
    cdn_err *err = NULL;
    ASSERT_FAILS(extract_buf(&b, dst, &err), err, "not following it");
    snprintf(p, sizeof(p), "%s/planted", outside);
    ASSERT_TRUE(access(p, F_OK) < 0);
    cdn_err_free(err);
    cdn_buf_free(&b);
    th_rmtree(root);
}
