/* SPDX-License-Identifier: Apache-2.0 */
/* The listing of a result tree, recorded by a sink placed in front of the extractor: each file
 * and symlink as the bounded reader accepted it (and the extractor then wrote it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "workspace.h"

int cdn_workspace_listing_add(struct cdn_workspace_listing *l, const char *path, bool link,
                              bool exec, uint64_t size, int64_t mtime) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct cdn_workspace_entry *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    l->v[l->n++] = (struct cdn_workspace_entry){
        .path = p, .link = link, .exec = exec, .size = size, .mtime = mtime};
    return 0;
}

void cdn_workspace_listing_free(struct cdn_workspace_listing *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].path);
    free(l->v);
    *l = (struct cdn_workspace_listing){0};
}

static int rec_entry(void *ud, const struct cdn_archive_entry *e, cdn_err **err) {
    struct cdn_workspace_recorder *r = ud;
    if ((e->type == CDN_ARCHIVE_FILE || e->type == CDN_ARCHIVE_SYMLINK) &&
        cdn_workspace_listing_add(r->listing, e->path, e->type == CDN_ARCHIVE_SYMLINK,
                                  e->mode & 0100, e->size, e->mtime) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    return r->inner.entry(r->inner.ud, e, err);
}

static int rec_data(void *ud, const uint8_t *p, size_t n, cdn_err **err) {
    struct cdn_workspace_recorder *r = ud;
    return r->inner.data(r->inner.ud, p, n, err);
}

static int rec_end(void *ud, cdn_err **err) {
    struct cdn_workspace_recorder *r = ud;
    return r->inner.entry_end(r->inner.ud, err);
}

void cdn_workspace_recorder_init(struct cdn_workspace_recorder *r,
                                 struct cdn_workspace_listing *listing,
                                 const struct cdn_archive_sink *inner,
                                 struct cdn_archive_sink *out) {
    r->inner = *inner;
    r->listing = listing;
    *out = (struct cdn_archive_sink){rec_entry, rec_data, rec_end, r};
}
