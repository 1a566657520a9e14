/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_channel folders: a ListDir answered by one DirListing. The listing is the guest's word and
 * is checked before anyone sees it: no more entries than asked for, names a folder can hold
 * (1..255 bytes, no '/' or NUL, not "." or ".."), strictly in order (so never twice), targets
 * bounded, counts that add up. A listing that breaks any of these is a guest fault. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "channel_int.h"
#include "cleanup.h"

#define NAME_MAX_BYTES 255u
#define TARGET_MAX_BYTES 4096u

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
    if (n->len == 0 || n->len > NAME_MAX_BYTES)
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

static const char *bad_listing(const struct hstream *s, const CordonAgent__DirListing *l) {
    if (l->n_entries > s->want_entries)
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
        if (e->link_target.len > TARGET_MAX_BYTES ||
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

int chan_dir_listing(struct cdn_channel *ch, struct hstream *s, const CordonAgent__DirListing *l) {
    const char *why = bad_listing(s, l);
    if (why)
        return chan_fault(ch, EPROTO, "guest fault: list_dir stream %" PRIu64 ": %s", s->id, why);
    if (!(s->listing = copy_listing(l)))
        return chan_fault(ch, ENOMEM, "out of memory");
    return 0;
}

int cdn_channel_list_dir(struct cdn_channel *ch, const char *path, uint32_t max_entries,
                         int timeout_ms, struct cdn_dir_listing **out, cdn_err **err) {
    if (max_entries > CDN_DIR_MAX_ENTRIES)
        return cdn_err_set(err, EINVAL, "list_dir: at most %u entries", CDN_DIR_MAX_ENTRIES);
    if (!cdn_channel_peer_has(ch, "list_dir"))
        return cdn_err_set(err, ENOTSUP, "%s: its agent (%s) cannot list folders", ch->name,
                           ch->peer_software ? ch->peer_software : "?");
    uint64_t deadline = chan_deadline(ch, timeout_ms);
    CordonAgent__ListDir ld = CORDON_AGENT__LIST_DIR__INIT;
    ld.path = (char *)path;
    ld.max_entries = max_entries ? max_entries : CDN_DIR_DEFAULT_ENTRIES;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_LIST_DIR;
    env.list_dir = &ld;
    struct hstream *s;
    int r = chan_open_stream(ch, HS_LIST_DIR, &env, &s, err);
    if (r < 0)
        return r;
    s->want_entries = ld.max_entries;
    r = chan_finish_stream(ch, s, deadline, "list_dir", err);
    if (r >= 0 && !s->listing)
        r = cdn_err_set(err, EPROTO, "%s: list_dir ended without a listing", ch->name);
    if (r >= 0)
        *out = TAKE_PTR(s->listing);
    chan_stream_release(ch, s);
    return r < 0 ? cdn_err_prefix(err, "listing '%s'", path) : 0;
}
