/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_archive: the tar codec both sides use to move directory trees across the VM boundary. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

enum cdn_archive_type {
    CDN_ARCHIVE_FILE,
    CDN_ARCHIVE_DIR,
    CDN_ARCHIVE_SYMLINK,
};

struct cdn_archive_entry {
    enum cdn_archive_type type;
    const char *path; /* normalised: relative, no '.', '..' or empty components */
    const char *link; /* symlink target, NULL otherwise */
    uint32_t mode;    /* permission bits only (0777) */
    uint64_t size;    /* file bytes that follow as data */
    int64_t mtime;
};

struct cdn_archive_limits {
    uint64_t max_total_bytes; /* sum of file sizes */
    uint64_t max_entries;
    uint32_t max_path_bytes; /* for entry paths and symlink targets */
    uint32_t max_depth;      /* path components */
};

#define CDN_ARCHIVE_DEFAULT_TOTAL_BYTES (4ull << 30)
#define CDN_ARCHIVE_DEFAULT_ENTRIES 200000u
#define CDN_ARCHIVE_DEFAULT_PATH_BYTES 4096u
#define CDN_ARCHIVE_DEFAULT_DEPTH 64u

/* Fills zero fields of l with the defaults above. */
void cdn_archive_limits_fill(struct cdn_archive_limits *l);

/* Where a reader delivers what it accepts. entry is called once per entry, data zero or more
 * times for a file's bytes, entry_end after the last byte of each entry. A negative return
 * (with *err set) stops the reader. */
struct cdn_archive_sink {
    int (*entry)(void *ud, const struct cdn_archive_entry *e, cdn_err **err);
    int (*data)(void *ud, const uint8_t *p, size_t n, cdn_err **err);
    int (*entry_end)(void *ud, cdn_err **err);
    void *ud;
};

/* ---- reader: streaming, bounded, refusing ----
 * Refuses (EPERM) absolute paths, '..' components, entries under an earlier symlink, symlinks
 * whose target is absolute or leaves the root, hardlinks, devices and FIFOs; refuses (EFBIG) an
 * archive past a limit; refuses (EBADMSG) malformed headers. The error names the entry (its
 * 1-based number and path) and the reason. After a refusal every call fails. Pure: no I/O. */
struct cdn_archive_reader;

int cdn_archive_reader_new(const struct cdn_archive_limits *limits,
                           const struct cdn_archive_sink *sink, struct cdn_archive_reader **out);
void cdn_archive_reader_free(struct cdn_archive_reader *r);
void cdn_archive_reader_freep(struct cdn_archive_reader **r);
int cdn_archive_reader_feed(struct cdn_archive_reader *r, const void *p, size_t n, cdn_err **err);
/* The input has ended: fails unless the archive's end marker was seen. */
int cdn_archive_reader_finish(struct cdn_archive_reader *r, cdn_err **err);
uint64_t cdn_archive_reader_entries(const struct cdn_archive_reader *r);
uint64_t cdn_archive_reader_file_bytes(const struct cdn_archive_reader *r);

/* ---- writer: a tar stream of the tree under a directory, pulled in pieces ----
 * Entries are relative to the root, in name order; regular files, directories and symlinks are
 * archived, other file types skipped. excludes are fnmatch(3) globs: a pattern without '/'
 * matches any single name, one with '/' the whole relative path; excluded directories are not
 * entered. */
struct cdn_archive_writer;

int cdn_archive_writer_new(int root_dirfd, const char *const *excludes, size_t n_excludes,
                           struct cdn_archive_writer **out, cdn_err **err);
void cdn_archive_writer_free(struct cdn_archive_writer *w);
void cdn_archive_writer_freep(struct cdn_archive_writer **w);
/* Writes up to cap bytes of the stream into p; returns the count, 0 once the stream is complete. */
ssize_t cdn_archive_writer_read(struct cdn_archive_writer *w, uint8_t *p, size_t cap,
                                cdn_err **err);

/* The same stream without copying, for callers that send file bytes with sendfile(2): what comes
 * next is either len bytes at `bytes` (headers, padding; valid until the next call) or, when fd
 * is >= 0, len bytes of that file from offset. A file that shrank since its header was written
 * must be completed with zeros by the caller: the stream has to match its headers. */
struct cdn_archive_chunk {
    const uint8_t *bytes;
    int fd; /* owned by the writer; valid until the chunk is consumed */
    uint64_t offset;
    uint64_t len;
};
/* Returns 1 with *chunk set, 0 once the stream is complete. */
int cdn_archive_writer_peek(struct cdn_archive_writer *w, struct cdn_archive_chunk *chunk,
                            cdn_err **err);
/* Marks the first n bytes (n <= chunk.len) of the chunk from the last peek as sent. */
int cdn_archive_writer_advance(struct cdn_archive_writer *w, uint64_t n, cdn_err **err);
/* Like cdn_archive_writer_read, but stops before the data of a file chunk of at least
 * stop_before_file bytes (0: never), so the caller can send that with sendfile; sets *complete
 * once the whole stream has been produced. */
ssize_t cdn_archive_writer_fill(struct cdn_archive_writer *w, uint8_t *p, size_t cap,
                                uint64_t stop_before_file, bool *complete, cdn_err **err);
uint64_t cdn_archive_writer_entries(const struct cdn_archive_writer *w);

/* ---- extractor: a sink that creates entries beneath a directory ----
 * Never follows a symlink while creating (each parent is opened component by component with
 * O_NOFOLLOW), replaces existing files and symlinks, and applies directory modes at finish so a
 * read-only directory can still be filled. */
struct cdn_archive_extractor;

int cdn_archive_extractor_new(int root_dirfd, struct cdn_archive_extractor **out, cdn_err **err);
void cdn_archive_extractor_free(struct cdn_archive_extractor *x);
void cdn_archive_extractor_freep(struct cdn_archive_extractor **x);
void cdn_archive_extractor_sink(struct cdn_archive_extractor *x, struct cdn_archive_sink *sink);
int cdn_archive_extractor_finish(struct cdn_archive_extractor *x, cdn_err **err);
