/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_channel folders: a ListDir answered by one DirListing, checked (dir_listing.c) before
 * anyone sees it; a listing that fails the check is a guest fault. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "channel_int.h"
#include "cleanup.h"
#include "dir_listing.h"

int chan_dir_listing(struct cdn_channel *ch, struct hstream *s, const CordonAgent__DirListing *l) {
    const char *why = NULL;
    int r = cdn_dir_listing_check(l, s->want_entries, &s->listing, &why);
    if (r == -ENOMEM)
        return chan_fault(ch, ENOMEM, "out of memory");
    if (r < 0)
        return chan_fault(ch, EPROTO, "guest fault: list_dir stream %" PRIu64 ": %s", s->id, why);
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
