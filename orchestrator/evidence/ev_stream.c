/* SPDX-License-Identifier: Apache-2.0 */
/* A file written as its bytes arrive, hashed (SHA-256, OpenSSL) on the way. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ev_internal.h"

int ev_stream_open(struct ev_stream *s, const char *path, cdn_err **err) {
    *s = (struct ev_stream){.fd = -1};
    s->path = strdup(path);
    s->md = EVP_MD_CTX_new();
    if (!s->path || !s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
        ev_stream_abort(s);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    s->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (s->fd < 0) {
        int e = errno;
        ev_stream_abort(s);
        return cdn_err_set(err, e, "creating %s: %s", path, strerror(e));
    }
    return 0;
}

int ev_stream_write(struct ev_stream *s, const void *p, size_t n, cdn_err **err) {
    if (EVP_DigestUpdate(s->md, p, n) != 1)
        return cdn_err_set(err, EIO, "hashing %s", s->path);
    s->bytes += n;
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(s->fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return cdn_err_set(err, errno, "writing %s: %m", s->path);
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int ev_stream_close(struct ev_stream *s, char hex[65], cdn_err **err) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    int r = 0;
    if (EVP_DigestFinal_ex(s->md, md, &len) != 1)
        r = cdn_err_set(err, EIO, "hashing %s", s->path);
    for (unsigned i = 0; i < len && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
    if (r == 0) {
        int c = close(s->fd);
        s->fd = -1; /* closed either way: ev_stream_abort must not close it again */
        if (c < 0)
            r = cdn_err_set(err, errno, "saving %s: %m", s->path);
    }
    ev_stream_abort(s); /* releases the rest (and the fd, when an earlier step failed) */
    return r;
}

void ev_stream_abort(struct ev_stream *s) {
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    free(s->path);
    s->path = NULL;
}
