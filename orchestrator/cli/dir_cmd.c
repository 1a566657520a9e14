/* SPDX-License-Identifier: Apache-2.0 */
/* cordon ls ID:PATH: a folder in a sandbox, through cordond's ListDir (`cordon ls` without an
 * ID:PATH lists sandboxes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "cli.h"
#include "remote.h"

static const char *const type_names[] = {"other", "file", "dir", "symlink"};

const char *cli_entry_type_name(Cordon__V1__EntryType t) {
    return (unsigned)t < sizeof(type_names) / sizeof(type_names[0]) ? type_names[t] : "other";
}

json_t *cli_dir_entry_json(const Cordon__V1__DirEntry *e) {
    char mode[8];
    snprintf(mode, sizeof(mode), "%04o", e->mode & 07777);
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:I}", "name", e->name, "type",
                          cli_entry_type_name(e->type), "size", (json_int_t)e->size, "mode", mode,
                          "mtime_unix_ns", (json_int_t)e->mtime_unix_ns);
    if (j && e->type == CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_SYMLINK)
        json_object_set_new(j, "link_target", json_string(e->link_target));
    return j;
}

static void entry_print(const Cordon__V1__DirEntry *e) {
    char when[32] = "-";
    time_t t = (time_t)(e->mtime_unix_ns / 1000000000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    bool dir = e->type == CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_DIR;
    bool link = e->type == CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_SYMLINK;
    printf("%-7s  %04o  %12llu  %s  %s%s%s%s\n", cli_entry_type_name(e->type), e->mode & 07777,
           (unsigned long long)e->size, when, e->name, dir ? "/" : "", link ? " -> " : "",
           link ? e->link_target : "");
}

int cli_ls_dir(const struct cli_remote *r, char *target, uint32_t max) {
    char *id, *path;
    if (!cli_remote_target(target, &id, &path)) {
        fprintf(stderr, "cordon ls: '%s' is not ID:PATH\n", target);
        return CLI_EXIT_FAILURE;
    }
    _cleanup_free_ char *gpath = cli_guest_path(path);
    if (!gpath) {
        fprintf(stderr, "cordon ls: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    Cordon__V1__ListDirRequest q = CORDON__V1__LIST_DIR_REQUEST__INIT;
    q.sandbox_id = id;
    q.path = gpath;
    q.max_entries = max;
    ProtobufCMessage *m = NULL;
    int code = cli_remote_unary("ls", r, "ListDir", &q.base,
                                &cordon__v1__list_dir_response__descriptor, &m);
    if (code)
        return code;
    const Cordon__V1__ListDirResponse *l = (const Cordon__V1__ListDirResponse *)m;
    if (r->json) {
        json_t *entries = json_array();
        for (size_t i = 0; i < l->n_entries; i++)
            json_array_append_new(entries, cli_dir_entry_json(l->entries[i]));
        cli_json_print(json_pack("{s:s, s:o, s:b, s:I}", "path", q.path, "entries", entries,
                                 "truncated", l->truncated, "total", (json_int_t)l->total));
    } else {
        for (size_t i = 0; i < l->n_entries; i++)
            entry_print(l->entries[i]);
        if (l->truncated)
            fprintf(stderr, "cordon ls: %zu of %llu entries shown (--max)\n", l->n_entries,
                    (unsigned long long)l->total);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
