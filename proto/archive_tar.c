/* SPDX-License-Identifier: Apache-2.0 */
/* ustar header fields: octal numbers, checksum, and the split name/prefix path. */
#include "archive_tar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"

void cdn_archive_limits_fill(struct cdn_archive_limits *l) {
    if (!l->max_total_bytes)
        l->max_total_bytes = CDN_ARCHIVE_DEFAULT_TOTAL_BYTES;
    if (!l->max_entries)
        l->max_entries = CDN_ARCHIVE_DEFAULT_ENTRIES;
    if (!l->max_path_bytes)
        l->max_path_bytes = CDN_ARCHIVE_DEFAULT_PATH_BYTES;
    if (!l->max_depth)
        l->max_depth = CDN_ARCHIVE_DEFAULT_DEPTH;
}

uint64_t tar_octal(const char *f, size_t n, bool *ok) {
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    for (; i < n && f[i] != '\0' && f[i] != ' '; i++) {
        if (f[i] < '0' || f[i] > '7' || v > (UINT64_MAX >> 3)) {
            if (ok)
                *ok = false;
            return 0;
        }
        v = (v << 3) | (uint64_t)(f[i] - '0');
    }
    return v;
}

bool tar_put_octal(char *f, size_t n, uint64_t v) {
    char tmp[32];
    int len = snprintf(tmp, sizeof(tmp), "%0*llo", (int)(n - 1), (unsigned long long)v);
    if (len < 0 || (size_t)len != n - 1)
        return false;
    memcpy(f, tmp, n); /* includes the NUL */
    return true;
}

static unsigned long header_sum(const struct tar_header *h) {
    const unsigned char *p = (const unsigned char *)h;
    unsigned long sum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++) {
        bool in_chksum = i >= offsetof(struct tar_header, chksum) &&
                         i < offsetof(struct tar_header, chksum) + sizeof(h->chksum);
        sum += in_chksum ? ' ' : p[i];
    }
    return sum;
}

bool tar_header_checksum_ok(const struct tar_header *h) {
    bool ok = true;
    uint64_t want = tar_octal(h->chksum, sizeof(h->chksum), &ok);
    return ok && want == header_sum(h);
}

void tar_header_set_checksum(struct tar_header *h) {
    memset(h->chksum, ' ', sizeof(h->chksum));
    snprintf(h->chksum, sizeof(h->chksum), "%06lo", header_sum(h));
    h->chksum[7] = ' ';
}

char *tar_header_path(const struct tar_header *h) {
    size_t nlen = strnlen(h->name, sizeof(h->name));
    size_t plen = memcmp(h->magic, "ustar\0", 6) == 0 ? strnlen(h->prefix, sizeof(h->prefix)) : 0;
    char *s = malloc(plen + 1 + nlen + 1);
    if (!s)
        return NULL;
    size_t at = 0;
    if (plen) {
        memcpy(s, h->prefix, plen);
        s[plen] = '/';
        at = plen + 1;
    }
    memcpy(s + at, h->name, nlen);
    s[at + nlen] = '\0';
    return s;
}

char *tar_header_link(const struct tar_header *h) {
    return strndup(h->linkname, sizeof(h->linkname));
}
