/* SPDX-License-Identifier: Apache-2.0 */
/* Archives built by hand, byte by byte, for tests that need ones no honest writer makes. */
#include "tar_build.h"

#include <stdio.h>
#include <string.h>

#include "archive_tar.h"

void th_tar_add(struct cdn_buf *b, const char *name, char type, const char *link, const char *data,
                size_t size) {
    struct tar_header h = {0};
    memcpy(h.name, name, strnlen(name, sizeof(h.name)));
    tar_put_octal(h.mode, sizeof(h.mode), type == '5' ? 0755 : 0644);
    tar_put_octal(h.uid, sizeof(h.uid), 0);
    tar_put_octal(h.gid, sizeof(h.gid), 0);
    tar_put_octal(h.size, sizeof(h.size), size);
    tar_put_octal(h.mtime, sizeof(h.mtime), 1700000000);
    h.typeflag = type;
    if (link)
        memcpy(h.linkname, link, strnlen(link, sizeof(h.linkname)));
    memcpy(h.magic, "ustar", 6);
    memcpy(h.version, "00", 2);
    tar_header_set_checksum(&h);
    cdn_buf_append(b, &h, sizeof(h));
    if (size) {
        size_t padded = (size + 511) / 512 * 512;
        cdn_buf_reserve(b, padded);
        memset(cdn_buf_tail(b), 0, padded);
        if (data)
            memcpy(cdn_buf_tail(b), data, size);
        cdn_buf_advance(b, padded);
    }
}

void th_tar_pax_path(struct cdn_buf *b, const char *path) {
    char rec[8192];
    size_t body = strlen(path) + strlen(" path=\n"), len = body + 1;
    while (len != body + (size_t)snprintf(NULL, 0, "%zu", len))
        len = body + (size_t)snprintf(NULL, 0, "%zu", len);
    snprintf(rec, sizeof(rec), "%zu path=%s\n", len, path);
    th_tar_add(b, "PaxHeader", 'x', NULL, rec, strlen(rec));
}

void th_tar_end(struct cdn_buf *b) {
    cdn_buf_reserve(b, 1024);
    memset(cdn_buf_tail(b), 0, 1024);
    cdn_buf_advance(b, 1024);
}
