/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_archive reader: a streaming tar (ustar, pax, GNU long names) parser that refuses anything
 * that could escape the destination or exhaust the host, and says which entry and why. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "archive_tar.h"
#include "cleanup.h"

enum state {
    ST_HEADER, /* collecting a 512-byte header block */
    ST_META,   /* collecting the data of a pax or GNU long-name header */
    ST_DATA,   /* passing file data to the sink */
    ST_PAD,    /* skipping padding up to the next block */
    ST_END,    /* saw the end-of-archive zero block */
    ST_BROKEN, /* refused; every later call fails */
};

/* Symlink paths seen so far, to refuse entries beneath them: an open-addressing string set. */
struct strset {
    char **slots;
    size_t cap, count;
};

struct cdn_archive_reader {
    struct cdn_archive_limits limits;
    struct cdn_archive_sink sink;
    enum state state;
    uint8_t block[TAR_BLOCK];
    size_t block_fill;
    uint64_t remaining; /* bytes left in ST_DATA / ST_META / ST_PAD */
    uint64_t data_size; /* declared data size of the current entry, for its padding */
    bool pass_data;     /* the sink was told of the current entry (not the root itself) */
    enum cdn_archive_type cur_type;
    char meta_type; /* 'x', 'g', 'L' or 'K' while in ST_META */
    char *meta;     /* collected meta data */
    size_t meta_fill;
    char *next_path; /* from a pax 'path' or GNU 'L' for the next entry */
    char *next_link;
    bool next_size_set;
    uint64_t next_size;
    uint64_t entries;
    uint64_t file_bytes;
    char *cur_path; /* the entry being read, for messages */
    struct strset symlinks;
};

/* ---- string set ---- */

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static bool strset_has(const struct strset *s, const char *p, size_t n) {
    if (!s->cap)
        return false;
    for (size_t i = hash_str(p, n) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        const char *v = s->slots[i];
        if (!v)
            return false;
        if (strlen(v) == n && memcmp(v, p, n) == 0)
            return true;
    }
}

static int strset_add(struct strset *s, const char *p) {
    if (strset_has(s, p, strlen(p)))
        return 0;
    if ((s->count + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i])
                continue;
            size_t j = hash_str(s->slots[i], strlen(s->slots[i])) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    char *copy = strdup(p);
    if (!copy)
        return -ENOMEM;
    size_t j = hash_str(p, strlen(p)) & (s->cap - 1);
    while (s->slots[j])
        j = (j + 1) & (s->cap - 1);
    s->slots[j] = copy;
    s->count++;
    return 0;
}

static void strset_free(struct strset *s) {
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    *s = (struct strset){0};
}

/* ---- lifecycle ---- */

int cdn_archive_reader_new(const struct cdn_archive_limits *limits,
                           const struct cdn_archive_sink *sink, struct cdn_archive_reader **out) {
    struct cdn_archive_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->limits = limits ? *limits : (struct cdn_archive_limits){0};
    cdn_archive_limits_fill(&r->limits);
    r->sink = *sink;
    *out = r;
    return 0;
}

void cdn_archive_reader_free(struct cdn_archive_reader *r) {
    if (!r)
        return;
    free(r->meta);
    free(r->next_path);
    free(r->next_link);
    free(r->cur_path);
    strset_free(&r->symlinks);
    free(r);
}

void cdn_archive_reader_freep(struct cdn_archive_reader **r) {
    cdn_archive_reader_free(*r);
    *r = NULL;
}

uint64_t cdn_archive_reader_entries(const struct cdn_archive_reader *r) { return r->entries; }
uint64_t cdn_archive_reader_file_bytes(const struct cdn_archive_reader *r) { return r->file_bytes; }

/* Every refusal goes through here: it names the entry and makes the reader unusable. */
__attribute__((format(printf, 4, 5))) static int refuse(struct cdn_archive_reader *r, cdn_err **err,
                                                        int code, const char *fmt, ...) {
    r->state = ST_BROKEN;
    va_list ap;
    va_start(ap, fmt);
    cdn_err_setv(err, code, fmt, ap);
    va_end(ap);
    if (r->cur_path)
        return cdn_err_prefix(err, "archive entry %" PRIu64 " '%s'", r->entries, r->cur_path);
    return cdn_err_prefix(err, "archive entry %" PRIu64, r->entries);
}

/* ---- path rules ---- */

/* Normalises path in place: drops empty and '.' components and a trailing '/'. Refuses absolute
 * paths, '..' components and paths past the length and depth limits. An empty result (the root
 * itself) is allowed and means "skip this entry". */
static int normalise_path(struct cdn_archive_reader *r, char *path, cdn_err **err) {
    size_t len = strlen(path);
    if (len > r->limits.max_path_bytes)
        return refuse(r, err, EPERM, "path is %zu bytes (limit %u)", len, r->limits.max_path_bytes);
    if (path[0] == '/')
        return refuse(r, err, EPERM, "absolute path");
    size_t out = 0, depth = 0;
    for (char *c = path; *c;) {
        char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return refuse(r, err, EPERM, "path has a '..' component");
        if (n > 0 && !(n == 1 && c[0] == '.')) {
            if (++depth > r->limits.max_depth)
                return refuse(r, err, EPERM, "path is deeper than %u components",
                              r->limits.max_depth);
            if (out)
                path[out++] = '/';
            memmove(path + out, c, n);
            out += n;
        }
        c += n;
        if (*c == '/')
            c++;
    }
    path[out] = '\0';
    return 0;
}

static int check_not_under_symlink(struct cdn_archive_reader *r, const char *path, cdn_err **err) {
    for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
        size_t n = (size_t)(s - path);
        if (strset_has(&r->symlinks, path, n))
            return refuse(r, err, EPERM, "lies beneath symlink '%.*s'", (int)n, path);
    }
    return 0;
}

/* A symlink target must be relative, made of leading '..' components then plain names, and
 * climb no higher than the link's own directory depth. Each parent of an accepted entry is a real
 * directory (entries under symlinks are refused), so resolving such a target never leaves the
 * root, even through other accepted symlinks. */
static int check_link_target(struct cdn_archive_reader *r, const char *path, const char *target,
                             cdn_err **err) {
    size_t len = strlen(target);
    if (len == 0)
        return refuse(r, err, EPERM, "symlink has an empty target");
    if (len > r->limits.max_path_bytes)
        return refuse(r, err, EPERM, "symlink target is %zu bytes (limit %u)", len,
                      r->limits.max_path_bytes);
    if (target[0] == '/')
        return refuse(r, err, EPERM, "symlink points to absolute path '%s'", target);
    size_t dir_depth = 0;
    for (const char *s = path; *s; s++)
        dir_depth += *s == '/';
    size_t ups = 0;
    bool seen_name = false;
    for (const char *c = target; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            if (seen_name)
                return refuse(r, err, EPERM, "symlink target '%s' has '..' after a name", target);
            if (++ups > dir_depth)
                return refuse(r, err, EPERM, "symlink target '%s' points outside the root", target);
        } else if (n > 0 && !(n == 1 && c[0] == '.')) {
            seen_name = true;
        }
        c += n;
        if (*c == '/')
            c++;
    }
    return 0;
}

/* ---- header parsing ---- */

static int take_meta_string(char **dst, const char *src, size_t n) {
    char *s = strndup(src, n);
    if (!s)
        return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

/* pax records: "LEN KEY=VALUE\n". Only path, linkpath and size matter; the rest is ignored. */
static int parse_pax(struct cdn_archive_reader *r, const char *p, size_t n, cdn_err **err) {
    size_t at = 0;
    while (at < n) {
        size_t len = 0, i = at;
        while (i < n && p[i] >= '0' && p[i] <= '9' && len < n)
            len = len * 10 + (size_t)(p[i++] - '0');
        if (i >= n || p[i] != ' ' || len <= i - at + 1 || len > n - at || p[at + len - 1] != '\n')
            return refuse(r, err, EBADMSG, "malformed pax record at byte %zu", at);
        const char *kv = p + i + 1, *end = p + at + len - 1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (!eq)
            return refuse(r, err, EBADMSG, "pax record without '=' at byte %zu", at);
        size_t klen = (size_t)(eq - kv), vlen = (size_t)(end - eq - 1);
        const char *v = eq + 1;
        if ((klen == 4 && !memcmp(kv, "path", 4)) || (klen == 8 && !memcmp(kv, "linkpath", 8))) {
            if (memchr(v, '\0', vlen))
                return refuse(r, err, EPERM, "pax %.*s holds a NUL byte", (int)klen, kv);
            if (take_meta_string(klen == 4 ? &r->next_path : &r->next_link, v, vlen) < 0)
                return refuse(r, err, ENOMEM, "out of memory");
        } else if (klen == 4 && !memcmp(kv, "size", 4)) {
            uint64_t size = 0;
            if (vlen == 0 || vlen > 19)
                return refuse(r, err, EBADMSG, "pax size is malformed");
            for (size_t k = 0; k < vlen; k++) {
                if (v[k] < '0' || v[k] > '9')
                    return refuse(r, err, EBADMSG, "pax size is malformed");
                size = size * 10 + (uint64_t)(v[k] - '0');
            }
            r->next_size = size;
            r->next_size_set = true;
        }
        at += len;
    }
    return 0;
}

static int finish_meta(struct cdn_archive_reader *r, cdn_err **err) {
    int ret = 0;
    if (r->meta_type == 'x')
        ret = parse_pax(r, r->meta, r->meta_fill, err);
    else if (r->meta_type == 'L' || r->meta_type == 'K') {
        size_t n = strnlen(r->meta, r->meta_fill);
        if (take_meta_string(r->meta_type == 'L' ? &r->next_path : &r->next_link, r->meta, n) < 0)
            return refuse(r, err, ENOMEM, "out of memory");
    }
    free(r->meta);
    r->meta = NULL;
    r->meta_fill = 0;
    return ret;
}

static void clear_next(struct cdn_archive_reader *r) {
    free(r->next_path);
    free(r->next_link);
    r->next_path = r->next_link = NULL;
    r->next_size_set = false;
}

static int begin_entry(struct cdn_archive_reader *r, const struct tar_header *h, uint64_t size,
                       cdn_err **err) {
    char type = h->typeflag;
    free(r->cur_path);
    r->cur_path = r->next_path ? TAKE_PTR(r->next_path) : tar_header_path(h);
    if (!r->cur_path)
        return refuse(r, err, ENOMEM, "out of memory");
    if (++r->entries > r->limits.max_entries)
        return refuse(r, err, EFBIG, "archive has more than %" PRIu64 " entries",
                      r->limits.max_entries);
    switch (type) {
    case '1': return refuse(r, err, EPERM, "hardlinks are not accepted");
    case '3': return refuse(r, err, EPERM, "character devices are not accepted");
    case '4': return refuse(r, err, EPERM, "block devices are not accepted");
    case '6': return refuse(r, err, EPERM, "FIFOs are not accepted");
    case '0':
    case '\0':
    case '7':
    case '5':
    case '2': break;
    default:
        return refuse(r, err, EPERM, "unsupported entry type '%c' (0x%02x)",
                      type >= 0x20 && type < 0x7f ? type : '?', (uint8_t)type);
    }
    int ret = normalise_path(r, r->cur_path, err);
    if (ret < 0)
        return ret;
    ret = check_not_under_symlink(r, r->cur_path, err);
    if (ret < 0)
        return ret;
    struct cdn_archive_entry e = {
        .path = r->cur_path,
        .mode = (uint32_t)tar_octal(h->mode, sizeof(h->mode), NULL) & 0777,
        .mtime = (int64_t)tar_octal(h->mtime, sizeof(h->mtime), NULL),
    };
    _cleanup_free_ char *link = NULL;
    if (type == '5') {
        e.type = CDN_ARCHIVE_DIR; /* a directory's data, if any, is skipped */
    } else if (type == '2') {
        e.type = CDN_ARCHIVE_SYMLINK;
        link = r->next_link ? TAKE_PTR(r->next_link) : tar_header_link(h);
        if (!link)
            return refuse(r, err, ENOMEM, "out of memory");
        if (r->cur_path[0] == '\0')
            return refuse(r, err, EPERM, "the root cannot be a symlink");
        ret = check_link_target(r, r->cur_path, link, err);
        if (ret < 0)
            return ret;
        if (strset_add(&r->symlinks, r->cur_path) < 0)
            return refuse(r, err, ENOMEM, "out of memory");
        e.link = link;
    } else {
        e.type = CDN_ARCHIVE_FILE;
        if (r->cur_path[0] == '\0')
            return refuse(r, err, EPERM, "a file cannot be the root");
        if (size > r->limits.max_total_bytes - r->file_bytes)
            return refuse(r, err, EFBIG,
                          "file of %" PRIu64 " bytes exceeds the archive's "
                          "%" PRIu64 "-byte limit",
                          size, r->limits.max_total_bytes);
        r->file_bytes += size;
        e.size = size;
    }
    clear_next(r);
    r->cur_type = e.type;
    r->remaining = r->data_size = size;
    r->pass_data = false;
    r->state = ST_DATA;
    if (r->cur_path[0] == '\0') /* "./" itself: nothing to create */
        return 0;
    ret = r->sink.entry(r->sink.ud, &e, err);
    if (ret < 0) {
        r->state = ST_BROKEN;
        return cdn_err_prefix(err, "archive entry %" PRIu64 " '%s'", r->entries, r->cur_path);
    }
    r->pass_data = true;
    return 0;
}

/* A whole header block has arrived. */
static int on_header(struct cdn_archive_reader *r, cdn_err **err) {
    static const uint8_t zero[TAR_BLOCK];
    if (memcmp(r->block, zero, TAR_BLOCK) == 0) {
        if (r->next_path || r->next_link)
            return refuse(r, err, EBADMSG, "archive ends after a long-name header");
        r->state = ST_END;
        return 0;
    }
    const struct tar_header *h = (const struct tar_header *)r->block;
    if (!tar_header_checksum_ok(h))
        return refuse(r, err, EBADMSG, "header checksum mismatch (not a tar stream?)");
    bool ok = true;
    uint64_t size = tar_octal(h->size, sizeof(h->size), &ok);
    if (!ok)
        return refuse(r, err, EBADMSG, "header size field is not octal");
    if (r->next_size_set)
        size = r->next_size;
    char type = h->typeflag;
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
        /* Meta data is small by nature; bound it so it cannot be a memory sink. */
        uint64_t cap = type == 'g' ? 0 : (uint64_t)r->limits.max_path_bytes * 2 + 1024;
        if (type != 'g' && size > cap)
            return refuse(r, err, EFBIG, "'%c' header of %" PRIu64 " bytes (limit %" PRIu64 ")",
                          type, size, cap);
        r->meta_type = type;
        r->remaining = size;
        if (type != 'g') {
            r->meta = calloc(1, (size_t)size + 1);
            if (!r->meta)
                return refuse(r, err, ENOMEM, "out of memory");
        }
        r->meta_fill = 0;
        r->state = ST_META;
        if (type != 'g' && size == 0)
            return finish_meta(r, err) < 0 ? -EBADMSG : (r->state = ST_HEADER, 0);
        return 0;
    }
    return begin_entry(r, h, size, err);
}

static void to_padding(struct cdn_archive_reader *r, uint64_t data_size) {
    r->remaining = (TAR_BLOCK - data_size % TAR_BLOCK) % TAR_BLOCK;
    r->state = ST_PAD;
}

int cdn_archive_reader_feed(struct cdn_archive_reader *r, const void *data, size_t n,
                            cdn_err **err) {
    const uint8_t *p = data;
    while (n > 0 || (r->state == ST_DATA && r->remaining == 0)) {
        switch (r->state) {
        case ST_BROKEN: return cdn_err_set(err, EPERM, "archive was already refused");
        case ST_END: return 0; /* trailing blocks after the end marker are ignored */
        case ST_HEADER: {
            size_t take = TAR_BLOCK - r->block_fill;
            if (take > n)
                take = n;
            memcpy(r->block + r->block_fill, p, take);
            r->block_fill += take;
            p += take;
            n -= take;
            if (r->block_fill == TAR_BLOCK) {
                r->block_fill = 0;
                int ret = on_header(r, err);
                if (ret < 0)
                    return ret;
            }
            break;
        }
        case ST_META: {
            size_t take = r->remaining < n ? (size_t)r->remaining : n;
            if (r->meta)
                memcpy(r->meta + r->meta_fill, p, take);
            r->meta_fill += take;
            r->remaining -= take;
            p += take;
            n -= take;
            if (r->remaining == 0) {
                size_t size = r->meta_fill;
                if (finish_meta(r, err) < 0)
                    return -EBADMSG;
                to_padding(r, size);
            }
            break;
        }
        case ST_DATA: {
            size_t take = r->remaining < n ? (size_t)r->remaining : n;
            bool to_sink = r->pass_data && r->cur_type == CDN_ARCHIVE_FILE;
            if (take > 0 && to_sink) {
                int ret = r->sink.data(r->sink.ud, p, take, err);
                if (ret < 0) {
                    r->state = ST_BROKEN;
                    return cdn_err_prefix(err, "archive entry %" PRIu64 " '%s'", r->entries,
                                          r->cur_path);
                }
            }
            r->remaining -= take;
            p += take;
            n -= take;
            if (r->remaining == 0) {
                if (r->pass_data) {
                    int ret = r->sink.entry_end(r->sink.ud, err);
                    if (ret < 0) {
                        r->state = ST_BROKEN;
                        return cdn_err_prefix(err, "archive entry %" PRIu64 " '%s'", r->entries,
                                              r->cur_path);
                    }
                }
                /* Padding follows the declared size, whatever the entry type. */
                to_padding(r, r->data_size);
            }
            break;
        }
        case ST_PAD: {
            size_t take = r->remaining < n ? (size_t)r->remaining : n;
            r->remaining -= take;
            p += take;
            n -= take;
            if (r->remaining == 0)
                r->state = ST_HEADER;
            break;
        }
        }
    }
    return 0;
}

int cdn_archive_reader_finish(struct cdn_archive_reader *r, cdn_err **err) {
    switch (r->state) {
    case ST_END: return 0;
    case ST_BROKEN: return cdn_err_set(err, EPERM, "archive was already refused");
    case ST_HEADER:
        if (r->block_fill == 0)
            return cdn_err_set(err, EBADMSG,
                               "archive ends without its end marker after %" PRIu64
                               " entries (truncated?)",
                               r->entries);
        /* fallthrough */
    default:
        return cdn_err_set(err, EBADMSG, "archive is truncated in entry %" PRIu64 " '%s'",
                           r->entries, r->cur_path ? r->cur_path : "");
    }
}
