/* SPDX-License-Identifier: Apache-2.0 */
/* The evidence folder between saves: a command's entry reaches the journal with one write as it
 * ends (manifest.json is not rewritten), a reader merges the two without counting an entry twice,
 * and a line cut short by a crash is not an entry. */
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
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
    snprintf(path, sizeof(path), "%s/journal.jsonl", dir);
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
