/* SPDX-License-Identifier: Apache-2.0 */
/* Artifacts: files pulled from the guest into artifacts/, listed with their sizes and SHA-256.
 * Names come from the bounded archive reader (relative, no "..", no absolute paths); the folders
 * they need are made here, never following a symlink. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "ev_internal.h"

static int make_parents(const char *root, const char *name, cdn_err **err) {
    _cleanup_free_ char *copy = strdup(name);
    if (!copy)
        return cdn_err_set(err, ENOMEM, "out of memory");
    _cleanup_close_ int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return cdn_err_set(err, errno, "opening %s: %m", root);
    char *save = NULL, *part = strtok_r(copy, "/", &save);
    for (char *next; part && (next = strtok_r(NULL, "/", &save)); part = next) {
        if (strcmp(part, "..") == 0 || strcmp(part, ".") == 0)
            return cdn_err_set(err, EINVAL, "artifact name %s is not plain", name);
        if (mkdirat(dfd, part, 0755) < 0 && errno != EEXIST)
            return cdn_err_set(err, errno, "artifact folder %s: %m", part);
        int sub = openat(dfd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            return cdn_err_set(err, errno, "artifact folder %s: %m", part);
        close(dfd);
        dfd = sub;
    }
    return 0;
}

int cdn_evidence_artifact_begin(struct cdn_evidence *ev, const char *name, cdn_err **err) {
    if (ev->art.fd >= 0)
        return cdn_err_set(err, EBUSY, "an artifact is already being written");
    if (!*name || name[0] == '/' || strstr(name, ".."))
        return cdn_err_set(err, EINVAL, "artifact name '%s' refused", name);
    char root[4300], path[8400];
    snprintf(root, sizeof(root), "%s/artifacts", ev->dir);
    int r = make_parents(root, name, err);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "%s/%s", root, name);
    if ((r = ev_stream_open(&ev->art, path, err)) < 0)
        return r;
    free(ev->art_name);
    ev->art_name = strdup(name);
    return ev->art_name ? 0 : cdn_err_set(err, ENOMEM, "out of memory");
}

int cdn_evidence_artifact_data(struct cdn_evidence *ev, const uint8_t *p, size_t n, cdn_err **err) {
    if (ev->art.fd < 0)
        return cdn_err_set(err, EINVAL, "no artifact is being written");
    return ev_stream_write(&ev->art, p, n, err);
}

int cdn_evidence_artifact_end(struct cdn_evidence *ev, cdn_err **err) {
    if (ev->art.fd < 0)
        return cdn_err_set(err, EINVAL, "no artifact is being written");
    uint64_t bytes = ev->art.bytes;
    char hex[65];
    int r = ev_stream_close(&ev->art, hex, err);
    if (r < 0)
        return r;
    json_t *a = json_pack("{s:s, s:I, s:s}", "name", ev->art_name, "bytes", (json_int_t)bytes,
                          "sha256", hex);
    json_array_append(ev->arts, a);
    cdn_evidence_event(ev, "artifact", a);
    return 0;
}
