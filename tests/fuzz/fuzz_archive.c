/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the streaming archive reader with small limits, fed in input-sized pieces.
 * The sink checks the reader's promises: every path it accepts is relative and has no '..'. */
#include <stdlib.h>
#include <string.h>

#include "archive.h"

static int on_entry(void *ud, const struct cdn_archive_entry *e, cdn_err **err) {
    (void)ud, (void)err;
    /* ".." as a component, not as the start of a name: "..foo" is a file like any other */
    if (e->path[0] == '/' || strncmp(e->path, "../", 3) == 0 || strstr(e->path, "/../") ||
        (strlen(e->path) >= 3 && strcmp(e->path + strlen(e->path) - 3, "/..") == 0) ||
        strcmp(e->path, "..") == 0)
        abort();
    if (e->link && e->link[0] == '/')
        abort();
    return 0;
}

static volatile uint8_t sink_xor; /* reading every byte lets ASan check the data pointer */

static int on_data(void *ud, const uint8_t *p, size_t n, cdn_err **err) {
    (void)err;
    uint64_t *bytes = ud;
    *bytes += n;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= p[i];
    sink_xor = x;
    return 0;
}

static int on_end(void *ud, cdn_err **err) {
    (void)ud, (void)err;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t bytes = 0;
    struct cdn_archive_sink sink = {on_entry, on_data, on_end, &bytes};
    struct cdn_archive_limits lim = {
        .max_total_bytes = 1u << 20, .max_entries = 64, .max_path_bytes = 512, .max_depth = 16};
    struct cdn_archive_reader *r = NULL;
    if (cdn_archive_reader_new(&lim, &sink, &r) < 0)
        return 0;
    size_t at = 0;
    int ret = 0;
    while (at < size && ret >= 0) {
        size_t piece = (size_t)(data[at] % 251) * 8 + 1;
        if (piece > size - at)
            piece = size - at;
        cdn_err *err = NULL;
        ret = cdn_archive_reader_feed(r, data + at, piece, &err);
        cdn_err_free(err);
        at += piece;
    }
    cdn_err *err = NULL;
    cdn_archive_reader_finish(r, &err);
    cdn_err_free(err);
    if (bytes > lim.max_total_bytes)
        abort();
    cdn_archive_reader_free(r);
    return 0;
}
