/* SPDX-License-Identifier: Apache-2.0 */
/* cordon cp: one file into a sandbox (LOCAL ID:PATH) or out of one (ID:PATH LOCAL), through
 * cordond, streamed in 1 MiB chunks. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "remote.h"

#define CHUNK (1u << 20)

static void usage(FILE *f) {
    fputs("usage: cordon cp [OPTIONS] LOCAL ID:PATH   (into the sandbox)\n"
          "       cordon cp [OPTIONS] ID:PATH LOCAL   (out of it; LOCAL '-' is stdout)\n"
          "\n"
          "A relative PATH is under /workspace. Into the sandbox, the file keeps its mode.\n"
          "\n"
          "options:\n"
          "  --max-bytes N      refuse a file bigger than N bytes (default: the daemon's "
          "cap)\n" CLI_REMOTE_USAGE,
          f);
}

struct upload {
    int fd;
    Cordon__V1__WriteFileChunk chunk;
    uint8_t *buf;
    bool first_sent, done;
    int error; /* errno of a failed read */
};

static int next_chunk(void *ud, const ProtobufCMessage **msg) {
    struct upload *u = ud;
    if (u->done)
        return 0;
    size_t n = 0;
    while (n < CHUNK) {
        ssize_t r = read(u->fd, u->buf + n, CHUNK - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -(u->error = errno);
        if (r == 0) {
            u->done = true;
            break;
        }
        n += (size_t)r;
    }
    if (u->first_sent) {
        if (n == 0)
            return 0;
        u->chunk.sandbox_id = (char *)"";
        u->chunk.path = (char *)"";
        u->chunk.mode = 0;
    }
    u->first_sent = true; /* the first chunk goes even when the file is empty */
    u->chunk.data.data = u->buf;
    u->chunk.data.len = n;
    *msg = &u->chunk.base;
    return 1;
}

static int upload(struct cdn_client *c, const char *local, char *id, const char *path, bool json) {
    _cleanup_close_ int fd = open(local, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "cordon cp: %s: %s\n", local, fd < 0 ? strerror(errno) : "not a file");
        return CLI_EXIT_FAILURE;
    }
    _cleanup_free_ uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return CLI_EXIT_FAILURE;
    struct upload u = {.fd = fd, .buf = buf};
    cordon__v1__write_file_chunk__init(&u.chunk);
    u.chunk.sandbox_id = id;
    u.chunk.path = (char *)path;
    u.chunk.mode = st.st_mode & 07777;
    ProtobufCMessage *m = NULL;
    cdn_err *err = NULL;
    int rc = cdn_client_upload(c, "WriteFile", next_chunk, &u,
                               &cordon__v1__write_file_response__descriptor, &m, 0, &err);
    if (rc < 0 && u.error) {
        cdn_err_free(err);
        err = NULL;
        cdn_err_set(&err, u.error, "%s: %s", local, strerror(u.error));
    }
    if (rc < 0)
        return cli_remote_fail("cp", rc, err);
    uint64_t bytes = ((Cordon__V1__WriteFileResponse *)m)->bytes;
    protobuf_c_message_free_unpacked(m, NULL);
    if (json)
        cli_json_print(
            json_pack("{s:s, s:s, s:I}", "sandbox", id, "path", path, "bytes", (json_int_t)bytes));
    return 0;
}

struct download {
    int fd;
    uint64_t bytes;
    int error;
};

static int on_chunk(void *ud, const ProtobufCMessage *msg) {
    struct download *d = ud;
    const Cordon__V1__FileChunk *ch = (const Cordon__V1__FileChunk *)msg;
    for (size_t off = 0; off < ch->data.len;) {
        ssize_t w = write(d->fd, ch->data.data + off, ch->data.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -(d->error = errno);
        off += (size_t)w;
    }
    d->bytes += ch->data.len;
    return 0;
}

/* Into LOCAL's folder as a temporary file renamed over LOCAL once complete: a failed copy leaves
 * no half file. */
static int download(struct cdn_client *c, char *id, const char *path, const char *local,
                    uint64_t max_bytes, bool json) {
    Cordon__V1__ReadFileRequest q = CORDON__V1__READ_FILE_REQUEST__INIT;
    q.sandbox_id = id;
    q.path = (char *)path;
    q.max_bytes = max_bytes;
    bool to_stdout = strcmp(local, "-") == 0;
    char target[4200], tmp[4300];
    struct stat st;
    if (!to_stdout && stat(local, &st) == 0 && S_ISDIR(st.st_mode)) {
        _cleanup_free_ char *p = strdup(path);
        snprintf(target, sizeof(target), "%s/%s", local, p ? basename(p) : "file");
    } else {
        snprintf(target, sizeof(target), "%s", local);
    }
    snprintf(tmp, sizeof(tmp), "%s.cordon-cp-XXXXXX", target);
    struct download d = {.fd = to_stdout ? 1 : mkostemp(tmp, O_CLOEXEC)};
    if (d.fd < 0) {
        fprintf(stderr, "cordon cp: %s: %s\n", target, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    cdn_err *err = NULL;
    int rc = cdn_client_stream(c, "ReadFile", &q.base, &cordon__v1__file_chunk__descriptor,
                               on_chunk, &d, NULL, 0, &err);
    if (rc < 0 && d.error) {
        cdn_err_free(err);
        err = NULL;
        cdn_err_set(&err, d.error, "%s: %s", target, strerror(d.error));
    }
    if (!to_stdout) {
        if (rc == 0 && (fsync(d.fd) < 0 || rename(tmp, target) < 0))
            rc = cdn_err_set(&err, errno, "%s: %s", target, strerror(errno));
        close(d.fd);
        if (rc < 0)
            unlink(tmp);
    }
    if (rc < 0)
        return cli_remote_fail("cp", rc, err);
    if (json)
        cli_json_print(json_pack("{s:s, s:s, s:s, s:I}", "sandbox", id, "path", path, "local",
                                 to_stdout ? "-" : target, "bytes", (json_int_t)d.bytes));
    return 0;
}

int cli_cp(int argc, char **argv) {
    static const struct option longopts[] = {{"max-bytes", required_argument, NULL, 'm'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    struct cli_remote r;
    cli_remote_init(&r);
    uint64_t max_bytes = 0;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        char *end;
        if (c == 'm') {
            max_bytes = strtoull(optarg, &end, 10);
            if (*end || end == optarg || !max_bytes) {
                fprintf(stderr, "cordon cp: --max-bytes takes a number, not '%s'\n", optarg);
                return CLI_EXIT_FAILURE;
            }
        } else if (!cli_remote_option(&r, c, optarg)) {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : CLI_EXIT_FAILURE;
        }
    }
    char *id, *path;
    if (argc - optind != 2) {
        usage(stderr);
        return CLI_EXIT_FAILURE;
    }
    bool in = cli_remote_target(argv[optind + 1], &id, &path);
    if (!in && !cli_remote_target(argv[optind], &id, &path)) {
        fprintf(stderr, "cordon cp: one side must be ID:PATH\n");
        return CLI_EXIT_FAILURE;
    }
    _cleanup_free_ char *gpath = cli_guest_path(path);
    if (!gpath) {
        fprintf(stderr, "cordon cp: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (cli_remote_open("cp", &r, &c) < 0)
        return CLI_EXIT_FAILURE;
    return in ? upload(c, argv[optind], id, gpath, r.json)
              : download(c, id, gpath, argv[optind + 1], max_bytes, r.json);
}
