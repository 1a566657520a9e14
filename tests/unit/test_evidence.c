/* SPDX-License-Identifier: Apache-2.0 */
/* The evidence folder between saves: a command's entry reaches the audit trail with one write as
 * it ends (manifest.json is not rewritten), a reader merges the two without counting an entry
 * twice, and a line cut short by a crash is not an entry. Sealed, the trail and the manifest are
 * checked: an edited, removed or reordered line, a trail cut short and a replaced signature are
 * each named. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "evidence.h"
#include "harness.h"
#include "test.h"

static size_t commands_in(const char *dir, bool merged) {
    json_t *m = NULL;
    cdn_err *err = NULL;
    if (merged) {
        ASSERT_OK(cdn_evidence_load(dir, &m, &err), err);
    } else {
        char path[4300];
        snprintf(path, sizeof(path), "%s/manifest.json", dir);
        m = json_load_file(path, 0, NULL);
        ASSERT_TRUE(m);
    }
    size_t n = json_array_size(json_object_get(m, "commands"));
    json_decref(m);
    return n;
}

static void one_command(struct cdn_evidence *ev, const char *word, int code) {
    const char *argv[] = {"echo", word};
    struct cdn_evidence_cmd *c = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_evidence_cmd_begin(ev, argv, 2, "/workspace", &c, &err), err);
    cdn_evidence_cmd_output(c, 1, (const uint8_t *)word, strlen(word));
    struct cdn_evidence_exit x = {.exit_code = code};
    ASSERT_OK(cdn_evidence_cmd_end(ev, c, &x, &err), err);
}

TEST(commands_are_journaled_and_merged_once) {
    _cleanup_free_ char *task = th_tmpdir();
    struct cdn_evidence *ev = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_evidence_open(task, "0123456789abcdef", &ev, &err), err);
    const char *dir = cdn_evidence_dir(ev);
    one_command(ev, "one", 0);
    one_command(ev, "two", 3);
    ASSERT_EQ(commands_in(dir, false), 0); /* the manifest as last saved */
    ASSERT_EQ(commands_in(dir, true), 2);  /* what a reader sees */

    /* a save takes everything in; the journal's entries are not counted again */
    ASSERT_OK(cdn_evidence_save(ev, &err), err);
    ASSERT_EQ(commands_in(dir, false), 2);
    ASSERT_EQ(commands_in(dir, true), 2);
    one_command(ev, "three", 0);
    ASSERT_EQ(commands_in(dir, true), 3);
    json_t *m = NULL;
    ASSERT_OK(cdn_evidence_load(dir, &m, &err), err);
    json_t *last = json_array_get(json_object_get(m, "commands"), 2);
    ASSERT_EQ(json_integer_value(json_object_get(last, "n")), 3);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(last, "stdout"), "bytes")), 5);
    json_decref(m);

    /* a crash in the middle of a line: that line is not an entry */
    char path[4300];
    snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    const char torn[] = "{\"seq\":4,\"key\":\"commands\",\"value\":{\"n\":4,\"ar";
    ASSERT_EQ(write(fd, torn, sizeof(torn) - 1), (ssize_t)sizeof(torn) - 1);
    close(fd);
    ASSERT_EQ(commands_in(dir, true), 3);

    /* and the folder syncs (the end of a task) */
    ASSERT_OK(cdn_evidence_sync(ev, &err), err);
    cdn_evidence_free(ev);
    th_rmtree(task);
}

/* The trail's lines, rewritten by fn (which may edit, drop or swap them). */
static void rewrite_trail(const char *dir, void (*fn)(char **lines, size_t *n)) {
    char path[4300];
    snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
    _cleanup_free_ char *text = th_read_file(path);
    char *lines[256];
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < 256;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    fn(lines, &n);
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
    fclose(f);
}

static char edited[4096];
static void edit_third(char **l, size_t *n) {
    (void)n;
    snprintf(edited, sizeof(edited), "%s", l[2]);
    char *p = strstr(edited, "\"at\":\"");
    ASSERT_TRUE(p);
    p[6] = p[6] == '1' ? '2' : '1'; /* one digit of its time */
    l[2] = edited;
}
static void drop_third(char **l, size_t *n) {
    memmove(&l[2], &l[3], (*n - 3) * sizeof(*l));
    (*n)--;
}
static void swap_second_third(char **l, size_t *n) {
    (void)n;
    char *t = l[1];
    l[1] = l[2];
    l[2] = t;
}
static void drop_last(char **l, size_t *n) {
    (void)l;
    (*n)--;
}

/* A sealed folder copied to dir (a fresh one per tampering). */
static char *sealed_copy(const char *src, const char *name) {
    char *dst = NULL;
    ASSERT_TRUE(asprintf(&dst, "%s/../%s", src, name) > 0);
    th_sh("rm -rf %s && cp -a %s %s", dst, src, dst);
    return dst;
}

static void expect(const char *dir, const char *pub, const char *want) {
    char why[1024];
    cdn_err *err = NULL;
    ASSERT_OK(cdn_evidence_verify(dir, pub, why, sizeof(why), &err), err);
    if (!want)
        ASSERT_STREQ(why, "");
    else
        ASSERT_CONTAINS(why, want);
}

TEST(a_sealed_trail_names_the_first_line_tampered_with) {
    _cleanup_free_ char *task = th_tmpdir();
    struct cdn_evidence *ev = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_evidence_open(task, "0123456789abcdef", &ev, &err), err);
    cdn_evidence_event(ev, "task.created", json_pack("{s:s}", "task", "0123456789abcdef"));
    one_command(ev, "one", 0); /* command.started, command.exited */
    cdn_evidence_event(ev, "file.written", json_pack("{s:s}", "path", "/workspace/x"));
    one_command(ev, "two", 1);
    char keys[4300], pub[4400];
    snprintf(keys, sizeof(keys), "%s/keys", task);
    snprintf(pub, sizeof(pub), "%s/host-ed25519.pub", keys);
    ASSERT_OK(cdn_evidence_seal(ev, keys, &err), err);
    struct stat st;
    char priv[4400];
    snprintf(priv, sizeof(priv), "%s/host-ed25519.pem", keys);
    ASSERT_EQ(stat(priv, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600); /* the host's private key */
    _cleanup_free_ char *dir = strdup(cdn_evidence_dir(ev));
    cdn_evidence_free(ev);
    expect(dir, pub, NULL); /* untouched */

    _cleanup_free_ char *a = sealed_copy(dir, "edited");
    rewrite_trail(a, edit_third);
    expect(a, pub, "audit.jsonl:3: edited");
    _cleanup_free_ char *b = sealed_copy(dir, "removed");
    rewrite_trail(b, drop_third);
    expect(b, pub, "audit.jsonl:3: removed (the line there now is seq 4)");
    _cleanup_free_ char *c = sealed_copy(dir, "swapped");
    rewrite_trail(c, swap_second_third);
    expect(c, pub, "audit.jsonl:2: reordered");
    _cleanup_free_ char *d = sealed_copy(dir, "cut");
    rewrite_trail(d, drop_last);
    expect(d, pub, "audit.jsonl:6: removed (the signed manifest records 6 lines)");

    /* a signature made with another key, or a manifest rewritten: the signature fails */
    _cleanup_free_ char *e = sealed_copy(dir, "resigned");
    struct cdn_evidence *other = NULL;
    _cleanup_free_ char *task2 = th_tmpdir();
    ASSERT_OK(cdn_evidence_open(task2, "fedcba9876543210", &other, &err), err);
    char keys2[4300];
    snprintf(keys2, sizeof(keys2), "%s/keys", task2);
    ASSERT_OK(cdn_evidence_seal(other, keys2, &err), err);
    th_sh("cp %s/manifest.sig %s/manifest.sig", cdn_evidence_dir(other), e);
    cdn_evidence_free(other);
    expect(e, pub, "manifest.sig: does not verify");
    _cleanup_free_ char *f = sealed_copy(dir, "rewritten");
    th_sh("sed -i 's/\"lines\": 6/\"lines\": 5/' %s/manifest.json", f);
    expect(f, pub, "manifest.sig: does not verify");
    th_rmtree(task2);
    th_rmtree(task);
}

/* A sealed folder reopened (a review's decision after the task) goes on with the same chain and
 * is sealed again: it verifies, with the later lines after the earlier ones; the review summary
 * reads the manifest. */
TEST(a_reopened_trail_continues_its_chain_and_is_resealed) {
    _cleanup_free_ char *task = th_tmpdir();
    struct cdn_evidence *ev = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_evidence_open(task, "0123456789abcdef", &ev, &err), err);
    one_command(ev, "one", 0);
    one_command(ev, "two", 3);
    char keys[4300], pub[4400];
    snprintf(keys, sizeof(keys), "%s/keys", task);
    snprintf(pub, sizeof(pub), "%s/host-ed25519.pub", keys);
    ASSERT_OK(cdn_evidence_seal(ev, keys, &err), err);
    _cleanup_free_ char *dir = strdup(cdn_evidence_dir(ev));
    cdn_evidence_free(ev);
    ASSERT_OK(cdn_evidence_reopen(task, &ev, &err), err);
    cdn_evidence_event(ev, "review.rejected", json_pack("{s:s}", "by", "uid:1000"));
    ASSERT_OK(cdn_evidence_seal(ev, keys, &err), err);
    cdn_evidence_free(ev);
    expect(dir, pub, NULL);
    char trail[4400];
    snprintf(trail, sizeof(trail), "%s/audit.jsonl", dir);
    _cleanup_free_ char *text = th_read_file(trail);
    ASSERT_CONTAINS(text, "\"seq\":5,");
    ASSERT_CONTAINS(text, "\"review.rejected\"");
    json_t *m = NULL;
    ASSERT_OK(cdn_evidence_load(dir, &m, &err), err);
    json_t *s = cdn_evidence_review_summary(m);
    ASSERT_EQ(json_array_size(json_object_get(s, "commands")), 2);
    ASSERT_EQ(json_array_size(json_object_get(s, "failed")), 1);
    json_decref(s);
    json_decref(m);
    /* Edited after the reseal: still caught. */
    _cleanup_free_ char *a = sealed_copy(dir, "edited");
    rewrite_trail(a, edit_third);
    expect(a, pub, "audit.jsonl:3: edited");
    th_rmtree(task);
}
