/* SPDX-License-Identifier: Apache-2.0 */
/* cordon show ID | diff ID through cordond: a sandbox's record, evidence and diff. An id the
 * daemon does not know that is a `cordon run` task in the local state folder is shown from there.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "remote.h"

/* The one ID argument, with the common options; < 0 on bad usage. */
static int parse_id(const char *cmd, int argc, char **argv, struct cli_remote *r, const char **id) {
    char usage[256];
    snprintf(usage, sizeof(usage),
             "usage: cordon %s [OPTIONS] ID\n\nWith --state DIR: a `cordon run` task in DIR.\n",
             cmd);
    if (cli_remote_parse(argc, argv, r, usage) < 0)
        return -1;
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: cordon %s [OPTIONS] ID\n", cmd);
        return -1;
    }
    *id = argv[optind];
    return 0;
}

static bool local_task(const char *id) {
    char path[4400];
    if (strchr(id, '/') || strstr(id, ".."))
        return false;
    snprintf(path, sizeof(path), "%s/tasks/%s/evidence", cli_default_state(), id);
    return access(path, R_OK) == 0;
}

static ProtobufCMessage *get(struct cdn_client *c, const char *method, const char *id,
                             const ProtobufCMessageDescriptor *d, int *rc, cdn_err **err) {
    /* GetSandbox, GetEvidence and GetDiff take the same one-string request */
    Cordon__V1__GetSandboxRequest q = CORDON__V1__GET_SANDBOX_REQUEST__INIT;
    q.id = (char *)id;
    ProtobufCMessage *m = NULL;
    *rc = cdn_client_call(c, method, &q.base, d, &m, 60000, err);
    return m;
}

int cli_show_remote(int argc, char **argv) {
    struct cli_remote r;
    const char *id;
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (parse_id("show", argc, argv, &r, &id) < 0 || cli_remote_open("show", &r, &c) < 0)
        return CLI_EXIT_FAILURE;
    int rc;
    cdn_err *err = NULL;
    Cordon__V1__Sandbox *sb =
        (void *)get(c, "GetSandbox", id, &cordon__v1__sandbox__descriptor, &rc, &err);
    if (rc == -ENOENT && local_task(id)) {
        cdn_err_free(err);
        return cli_show(argc, argv);
    }
    if (rc < 0)
        return cli_remote_fail("show", rc, err);
    Cordon__V1__Evidence *ev =
        (void *)get(c, "GetEvidence", id, &cordon__v1__evidence__descriptor, &rc, &err);
    cdn_err_free(err); /* no evidence yet is not an error for show */
    json_error_t je;
    json_t *manifest = ev ? json_loads(ev->manifest_json, 0, &je) : NULL;
    if (r.json) {
        json_t *o = json_pack("{s:o}", "sandbox", cli_sandbox_json(sb));
        json_object_set_new(o, "evidence", manifest ? manifest : json_null());
        cli_json_print(o);
    } else {
        cli_sandbox_print(sb);
        if (manifest) {
            printf("\nevidence:\n");
            cli_manifest_print(manifest);
        }
        json_decref(manifest);
    }
    if (ev)
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    protobuf_c_message_free_unpacked(&sb->base, NULL);
    return 0;
}

int cli_diff_remote(int argc, char **argv) {
    struct cli_remote r;
    const char *id;
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (parse_id("diff", argc, argv, &r, &id) < 0 || cli_remote_open("diff", &r, &c) < 0)
        return CLI_EXIT_FAILURE;
    int rc;
    cdn_err *err = NULL;
    Cordon__V1__Diff *d = (void *)get(c, "GetDiff", id, &cordon__v1__diff__descriptor, &rc, &err);
    if (rc == -ENOENT && local_task(id) && !r.json) {
        cdn_err_free(err);
        return cli_diff(argc, argv);
    }
    if (rc < 0)
        return cli_remote_fail("diff", rc, err);
    if (r.json) {
        bool lossy;
        struct cdn_buf b = {0};
        cdn_buf_append(&b, d->patch.data, d->patch.len);
        json_t *o =
            json_pack("{s:s, s:s, s:i, s:i, s:i}", "base_commit", d->base_commit, "result_commit",
                      d->result_commit, "files_changed", (int)d->files_changed, "insertions",
                      (int)d->insertions, "deletions", (int)d->deletions);
        json_object_set_new(o, "patch", cli_output_json(&b, &lossy));
        json_object_set_new(o, "patch_not_utf8", json_boolean(lossy));
        cdn_buf_free(&b);
        cli_json_print(o);
    } else if (d->patch.len && fwrite(d->patch.data, 1, d->patch.len, stdout) != d->patch.len) {
        rc = -EIO;
    }
    protobuf_c_message_free_unpacked(&d->base, NULL);
    return rc < 0 ? CLI_EXIT_FAILURE : 0;
}
