/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_read_file: fstat for the size, then reads up to max + 1 bytes (a file that grew meanwhile
 * is still caught). cdn_rmtree: nftw, depth first, physical. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

int cdn_read_file(const char *path, size_t max, char **out, size_t *len, cdn_err **err) {
    *out = NULL;
    *len = 0;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return cdn_err_set(err, errno, "%s: %m", path);
    if (!S_ISREG(st.st_mode))
        return cdn_err_set(err, EINVAL, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > max)
        return cdn_err_set(err, EFBIG, "%s: over %zu bytes", path, max);
    size_t cap = (size_t)st.st_size + 1;
    _cleanup_free_ char *data = malloc(cap + 1);
    if (!data)
        return cdn_err_set(err, ENOMEM, "out of memory");
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(fd, data + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cdn_err_set(err, errno, "%s: %m", path);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got > max || got == cap) /* it grew while read */
        return cdn_err_set(err, EFBIG, "%s: changed while read (or over %zu bytes)", path, max);
    data[got] = '\0';
    *out = TAKE_PTR(data);
    *len = got;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void cdn_rmtree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }
