/* SPDX-License-Identifier: Apache-2.0 */
/* agent_dir: a ListDir reads the folder's names in full (up to SCAN_MAX), sorts them bytewise so
 * a cut listing is always the same first part, describes each with fstatat (a symlink as itself,
 * with its target) and sends as many as max_entries and one frame of the host's size allow. */
#include "dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

#define MAX_PATH_BYTES 4096u
#define SCAN_MAX 65536u /* names kept for sorting; beyond, only counted */
/* The envelope around the listing: stream id, body tag and length, truncated, total. */
#define FRAME_SLACK 64u
/* One entry's tag and length prefix inside the listing. */
#define ENTRY_PREFIX 6u

struct names {
    char **v;
    size_t n, cap;
    uint64_t total; /* names the folder held, kept or not */
};

static void names_clear(struct names *x) {
    for (size_t i = 0; i < x->n; i++)
        free(x->v[i]);
    free(x->v);
}

static int names_push(struct names *x, const char *name) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        char **v = reallocarray(x->v, cap, sizeof(*v));
        if (!v)
            return -ENOMEM;
        x->v = v;
        x->cap = cap;
    }
    if (!(x->v[x->n] = strdup(name)))
        return -ENOMEM;
    x->n++;
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads every name of the folder open at fd (which stays open). */
static int scan(int fd, struct names *x) {
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup_fd < 0)
        return -errno;
    _cleanup_closedir_ DIR *d = fdopendir(dup_fd);
    if (!d) {
        int e = errno;
        close(dup_fd);
        return -e;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de)
            return errno ? -errno : 0;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        x->total++;
        if (x->n < SCAN_MAX && names_push(x, de->d_name) < 0)
            return -ENOMEM;
    }
}

static CordonAgent__EntryType type_of(mode_t m) {
    return S_ISREG(m)   ? CORDON_AGENT__ENTRY_TYPE__ENTRY_FILE
           : S_ISDIR(m) ? CORDON_AGENT__ENTRY_TYPE__ENTRY_DIR
           : S_ISLNK(m) ? CORDON_AGENT__ENTRY_TYPE__ENTRY_SYMLINK
                        : CORDON_AGENT__ENTRY_TYPE__ENTRY_OTHER;
}

/* Fills e for name in the folder dfd; false when it went away meanwhile (it is left out). A
 * symlink's target is read into *target (allocated, the caller frees it). */
static bool describe(int dfd, const char *name, CordonAgent__DirEntry *e, char **target) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return false;
    cordon_agent__dir_entry__init(e);
    e->name.data = (uint8_t *)name;
    e->name.len = strlen(name);
    e->type = type_of(st.st_mode);
    e->size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    e->mode = st.st_mode & 07777;
    e->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (S_ISLNK(st.st_mode) && (*target = malloc(CDN_DIR_TARGET_MAX))) {
        ssize_t n = readlinkat(dfd, name, *target, CDN_DIR_TARGET_MAX);
        if (n > 0) {
            e->link_target.data = (uint8_t *)*target;
            e->link_target.len = (size_t)n;
        }
    }
    return true;
}

struct listing {
    CordonAgent__DirEntry *entries, **ptrs;
    char **targets;
    size_t n;
};

static void listing_clear(struct listing *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->targets[i]);
    free(l->targets);
    free(l->ptrs);
    free(l->entries);
}

static int open_folder(struct agent_conn *c, uint64_t id, const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0)
        return fd;
    int e = errno;
    struct stat st;
    if (e == ENOTDIR && stat(path, &st) == 0)
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "'%s' is not a folder", path);
    else
        agent_conn_send_error(c, id,
                              e == ENOENT || e == ENOTDIR
                                  ? CORDON_AGENT__ERROR_CODE__ERROR_NOT_FOUND
                                  : CORDON_AGENT__ERROR_CODE__ERROR_IO,
                              "open '%s': %s", path, strerror(e));
    return -1;
}

void agent_dir_list(struct agent_conn *c, uint64_t id, const CordonAgent__ListDir *req) {
    size_t plen = strnlen(req->path, MAX_PATH_BYTES + 1);
    uint32_t want = req->max_entries ? req->max_entries : CDN_DIR_DEFAULT_ENTRIES;
    if (plen == 0 || plen > MAX_PATH_BYTES || want > CDN_DIR_MAX_ENTRIES) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "list_dir: the path must be 1 to %u bytes and max_entries at most %u",
                              MAX_PATH_BYTES, CDN_DIR_MAX_ENTRIES);
        return;
    }
    _cleanup_close_ int fd = open_folder(c, id, req->path);
    if (fd < 0)
        return;
    struct names names = {0};
    int r = scan(fd, &names);
    if (r < 0) {
        names_clear(&names);
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_IO, "read '%s': %s", req->path,
                              strerror(-r));
        return;
    }
    if (names.n > 1)
        qsort(names.v, names.n, sizeof(*names.v), cmp_names);
    size_t cap = names.n < want ? names.n : want;
    struct listing l = {.entries = calloc(cap ? cap : 1, sizeof(*l.entries)),
                        .ptrs = calloc(cap ? cap : 1, sizeof(*l.ptrs)),
                        .targets = calloc(cap ? cap : 1, sizeof(*l.targets))};
    if (!l.entries || !l.ptrs || !l.targets) {
        listing_clear(&l);
        names_clear(&names);
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    size_t budget = agent_conn_peer_max_frame(c) - FRAME_SLACK, used = 0, gone = 0;
    bool cut = names.n < names.total;
    for (size_t i = 0; i < names.n; i++) {
        if (l.n == cap) {
            cut = true;
            break;
        }
        CordonAgent__DirEntry *e = &l.entries[l.n];
        if (!describe(fd, names.v[i], e, &l.targets[l.n])) {
            gone++;
            continue;
        }
        size_t size = protobuf_c_message_get_packed_size(&e->base) + ENTRY_PREFIX;
        if (used + size > budget) {
            free(l.targets[l.n]);
            l.targets[l.n] = NULL;
            cut = true;
            break;
        }
        used += size;
        l.ptrs[l.n] = e;
        l.n++;
    }
    CordonAgent__DirListing out = CORDON_AGENT__DIR_LISTING__INIT;
    out.entries = l.ptrs;
    out.n_entries = l.n;
    out.truncated = cut;
    out.total = names.total - gone;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_DIR_LISTING;
    env.dir_listing = &out;
    agent_conn_send(c, id, &env);
    listing_clear(&l);
    names_clear(&names);
}
