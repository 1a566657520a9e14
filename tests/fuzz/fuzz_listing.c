/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: a guest's DirListing. The first byte is how many entries the host asked for
 * (0..255), the rest a DirListing's protobuf encoding. Whatever the checker accepts must keep its
 * promises: no more entries than asked for, names of 1..255 bytes without '/', strictly in byte
 * order, targets on symlinks only, a total at least the count. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dir_listing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint32_t want = data[0];
    CordonAgent__DirListing *l = cordon_agent__dir_listing__unpack(NULL, size - 1, data + 1);
    if (!l)
        return 0;
    struct cdn_dir_listing *out = NULL;
    const char *why = NULL;
    int r = cdn_dir_listing_check(l, want, &out, &why);
    if (r == 0) {
        if (out->n > want || out->total < out->n)
            abort();
        for (size_t i = 0; i < out->n; i++) {
            const struct cdn_dir_entry *e = &out->entries[i];
            size_t n = strlen(e->name);
            if (n == 0 || n > 255 || strchr(e->name, '/') ||
                (i > 0 && strcmp(out->entries[i - 1].name, e->name) >= 0))
                abort();
            if ((e->link_target != NULL) != (e->type == CDN_DIR_SYMLINK) || e->mode > 07777)
                abort();
        }
        cdn_dir_listing_free(out);
    } else if (r == -EPROTO && !why) {
        abort();
    }
    cordon_agent__dir_listing__free_unpacked(l, NULL);
    return 0;
}
