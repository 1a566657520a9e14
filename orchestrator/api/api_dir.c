/* SPDX-License-Identifier: Apache-2.0 */
/* ListDir: a folder in a sandbox as a job for its worker; the guest's names (any bytes) become
 * UTF-8 strings a protobuf client can decode, the exact bytes kept beside those that were not. */
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "channel.h"

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    size_t len = c < 0x80             ? 1
                 : (c & 0xe0) == 0xc0 ? 2
                 : (c & 0xf0) == 0xe0 ? 3
                 : (c & 0xf8) == 0xf0 ? 4
                                      : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((len == 2 && c < 0xc2) ||                                /* overlong */
        (len == 3 && c == 0xe0 && p[1] < 0xa0) ||                /* overlong */
        (len == 3 && c == 0xed && p[1] >= 0xa0) ||               /* a surrogate */
        (len == 4 && c == 0xf0 && p[1] < 0x90) ||                /* overlong */
        (len == 4 && (c > 0xf4 || (c == 0xf4 && p[1] >= 0x90)))) /* past U+10FFFF */
        return 0;
    return len;
}

/* s as UTF-8, each byte that is not part of a valid sequence replaced by U+FFFD; *changed says
 * whether any was. NULL: no memory. */
static char *utf8_lossy(const char *s, bool *changed) {
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    *changed = false;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k) {
            memcpy(o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            *changed = true;
        }
    }
    *o = '\0';
    return out;
}

/* *text = s as UTF-8; *raw = its bytes when that changed them. */
static bool set_text(const char *s, char **text, ProtobufCBinaryData *raw) {
    bool changed;
    if (!(*text = utf8_lossy(s, &changed)))
        return false;
    if (changed)
        *raw = (ProtobufCBinaryData){.len = strlen(s), .data = (uint8_t *)s};
    return true;
}

static void send_listing(struct api_call *c, const struct cdn_dir_listing *l) {
    static const Cordon__V1__EntryType types[] = {
        [CDN_DIR_OTHER] = CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_OTHER,
        [CDN_DIR_FILE] = CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_FILE,
        [CDN_DIR_DIR] = CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_DIR,
        [CDN_DIR_SYMLINK] = CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_SYMLINK};
    Cordon__V1__DirEntry *e = calloc(l->n ? l->n : 1, sizeof(*e));
    Cordon__V1__DirEntry **ptrs = calloc(l->n ? l->n : 1, sizeof(*ptrs));
    bool ok = e && ptrs;
    size_t made = 0;
    for (; ok && made < l->n; made++) {
        const struct cdn_dir_entry *d = &l->entries[made];
        Cordon__V1__DirEntry *x = &e[made];
        cordon__v1__dir_entry__init(x);
        x->type = types[d->type];
        x->size = d->size;
        x->mode = d->mode;
        x->mtime_unix_ns = d->mtime_ns;
        ok = set_text(d->name, &x->name, &x->raw_name) &&
             (!d->link_target || set_text(d->link_target, &x->link_target, &x->raw_link_target));
        ptrs[made] = x;
    }
    if (ok) {
        Cordon__V1__ListDirResponse resp = CORDON__V1__LIST_DIR_RESPONSE__INIT;
        resp.entries = ptrs;
        resp.n_entries = l->n;
        resp.truncated = l->truncated;
        resp.total = l->total;
        if (api_call_send(c, &resp.base) == 0)
            api_call_finish(c, GRPC_STATUS_OK, NULL);
    } else {
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; e && i < made; i++) {
        if (e[i].name != protobuf_c_empty_string)
            free(e[i].name);
        if (e[i].link_target != protobuf_c_empty_string)
            free(e[i].link_target);
    }
    free(ptrs);
    free(e);
}

static void list_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    if (rc == 0)
        send_listing(c, res->listing);
    else
        api_call_fail(c, rc, e);
    api_call_unref(c);
}

static const struct cdn_job_ops list_ops = {.done = list_done, .abandoned = api_job_abandoned};

void api_list_dir(struct api_call *c) {
    Cordon__V1__ListDirRequest *q =
        (void *)api_call_decode(c, &cordon__v1__list_dir_request__descriptor);
    if (!q)
        return;
    if (q->max_entries > CDN_DIR_MAX_ENTRIES) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "max_entries is at most %u",
                        CDN_DIR_MAX_ENTRIES);
    } else {
        struct cdn_job_spec spec = {
            .kind = CDN_JOB_LIST, .path = q->path, .max_entries = q->max_entries};
        api_submit(c, q->sandbox_id, &spec, &list_ops);
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
}
