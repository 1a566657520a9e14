/* SPDX-License-Identifier: Apache-2.0 */
/* A guest's DirListing, checked and copied. It is the guest's word: no more entries than asked
 * for, names a folder can hold (1..255 bytes, no '/' or NUL, not "." or ".."), strictly in order
 * (so never twice), known types, permission bits only, targets bounded and on symlinks only,
 * counts that add up. Pure: no channel, so it is fuzzed alone (tests/fuzz/fuzz_listing.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dir_listing.h"

void cdn_dir_listing_free(struct cdn_dir_listing *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->entries[i].name);
        free(l->entries[i].link_target);
    }
    free(l->entries);
    free(l);
}

static const char *bad_name(const ProtobufCBinaryData *n) {
    if (n->len == 0 || n->len > CDN_DIR_NAME_MAX)
        return "a name of 0 or more than 255 bytes";
    if (memchr(n->data, '/', n->len) || memchr(n->data, '\0', n->len))
        return "a name with '/' or NUL";
    if ((n->len == 1 && n->data[0] == '.') || (n->len == 2 && !memcmp(n->data, "..", 2)))
        return "'.' or '..'";
    return NULL;
}

/* <0, 0, >0 as strcmp on the two names' bytes. */
static int cmp_bytes(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    int c = memcmp(a->data, b->data, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static const char *bad_listing(uint32_t want, const CordonAgent__DirListing *l) {
    if (l->n_entries > want)
        return "more entries than asked for";
    if (l->total < l->n_entries || (!l->truncated && l->total != l->n_entries))
        return "a total that does not match its entries";
    for (size_t i = 0; i < l->n_entries; i++) {
        const CordonAgent__DirEntry *e = l->entries[i];
        const char *why = bad_name(&e->name);
        if (why)
            return why;
        if (i > 0 && cmp_bytes(&l->entries[i - 1]->name, &e->name) >= 0)
            return "names out of order or listed twice";
        if ((unsigned)e->type > CORDON_AGENT__ENTRY_TYPE__ENTRY_SYMLINK)
            return "an unknown entry type";
        if (e->mode > 07777)
            return "a mode beyond the permission bits";
        if (e->link_target.len > CDN_DIR_TARGET_MAX ||
            memchr(e->link_target.data ? (const void *)e->link_target.data : "", '\0',
                   e->link_target.len))
            return "a link target over 4096 bytes or with NUL";
        if (e->link_target.len && e->type != CORDON_AGENT__ENTRY_TYPE__ENTRY_SYMLINK)
            return "a link target on an entry that is not a symlink";
    }
    return NULL;
}

static struct cdn_dir_listing *copy_listing(const CordonAgent__DirListing *l) {
    struct cdn_dir_listing *out = calloc(1, sizeof(*out));
    if (!out || !(out->entries = calloc(l->n_entries ? l->n_entries : 1, sizeof(*out->entries)))) {
        free(out);
        return NULL;
    }
    out->truncated = l->truncated;
    out->total = l->total;
    for (size_t i = 0; i < l->n_entries; i++, out->n++) {
        const CordonAgent__DirEntry *e = l->entries[i];
        struct cdn_dir_entry *d = &out->entries[i];
        static const enum cdn_dir_type types[] = {CDN_DIR_OTHER, CDN_DIR_FILE, CDN_DIR_DIR,
                                                  CDN_DIR_SYMLINK};
        d->type = types[e->type];
        d->size = e->size;
        d->mode = e->mode;
        d->mtime_ns = e->mtime_ns;
        d->name = strndup((const char *)e->name.data, e->name.len);
        if (e->type == CORDON_AGENT__ENTRY_TYPE__ENTRY_SYMLINK)
            d->link_target = strndup(e->link_target.data ? (const char *)e->link_target.data : "",
                                     e->link_target.len);
        if (!d->name || (e->type == CORDON_AGENT__ENTRY_TYPE__ENTRY_SYMLINK && !d->link_target)) {
            out->n++;
            cdn_dir_listing_free(out);
            return NULL;
        }
    }
    return out;
}

int cdn_dir_listing_check(const CordonAgent__DirListing *l, uint32_t want,
                          struct cdn_dir_listing **out, const char **why) {
    if ((*why = bad_listing(want, l)))
        return -EPROTO;
    return (*out = copy_listing(l)) ? 0 : -ENOMEM;
}
