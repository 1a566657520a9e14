/* SPDX-License-Identifier: Apache-2.0 */
/* The store's approvals: a request per command the policy sent to a person, decided once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define APPROVAL_COLUMNS                                                                           \
    "id, sandbox, tenant, argv, parts, status, requested_ms, decided_by, decided_ms"

void cdn_store_approval_clear(struct cdn_store_approval *a) {
    free(a->tenant);
    free(a->argv_json);
    free(a->parts_json);
    free(a->decided_by);
    a->tenant = a->argv_json = a->parts_json = a->decided_by = NULL;
}

static void read_approval(sqlite3_stmt *st, struct cdn_store_approval *a) {
    *a = (struct cdn_store_approval){0};
    const unsigned char *id = sqlite3_column_text(st, 0), *sb = sqlite3_column_text(st, 1);
    snprintf(a->id, sizeof(a->id), "%s", id ? (const char *)id : "");
    snprintf(a->sandbox, sizeof(a->sandbox), "%s", sb ? (const char *)sb : "");
    a->tenant = col_dup(st, 2);
    a->argv_json = col_dup(st, 3);
    a->parts_json = col_dup(st, 4);
    a->status = (enum cdn_approval_status)sqlite3_column_int(st, 5);
    a->requested_ms = sqlite3_column_int64(st, 6);
    a->decided_by = col_dup(st, 7);
    a->decided_ms = sqlite3_column_int64(st, 8);
}

int cdn_store_approval_add(struct cdn_store *s, const struct cdn_store_approval *a, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO approvals(id, sandbox, tenant, argv, parts, status, "
                           "requested_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing an approval");
    bind_text(st, 1, a->id);
    bind_text(st, 2, a->sandbox);
    bind_text(st, 3, a->tenant);
    bind_text(st, 4, a->argv_json);
    bind_text(st, 5, a->parts_json);
    sqlite3_bind_int(st, 6, CDN_APPROVAL_PENDING);
    sqlite3_bind_int64(st, 7, a->requested_ms ? a->requested_ms : now_ms());
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "recording approval %s", a->id);
}

int cdn_store_approval_get(struct cdn_store *s, const char *tenant, const char *id,
                           struct cdn_store_approval *out, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " APPROVAL_COLUMNS
                           " FROM approvals WHERE id = ? AND (?2 IS NULL OR tenant = ?2)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing an approval's lookup");
    bind_text(st, 1, id);
    bind_text(st, 2, tenant);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return cdn_err_set(err, ENOENT, "no approval %s", id);
    if (rc != SQLITE_ROW)
        return db_err(s, err, "reading approval %s", id);
    read_approval(st, out);
    return 0;
}

int cdn_store_approval_decide(struct cdn_store *s, const char *tenant, const char *id,
                              enum cdn_approval_status to, const char *by, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE approvals SET status = ?, decided_by = ?, decided_ms = ? "
                           "WHERE id = ? AND (?5 IS NULL OR tenant = ?5) AND status = ?6",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a decision");
    sqlite3_bind_int(st, 1, to);
    bind_text(st, 2, by);
    sqlite3_bind_int64(st, 3, now_ms());
    bind_text(st, 4, id);
    bind_text(st, 5, tenant);
    sqlite3_bind_int(st, 6, CDN_APPROVAL_PENDING);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_err(s, err, "deciding approval %s", id);
    if (sqlite3_changes(s->db))
        return 0;
    /* Not pending: decided already, or not this tenant's. */
    struct cdn_store_approval a;
    int r = cdn_store_approval_get(s, tenant, id, &a, err);
    if (r < 0)
        return r;
    r = cdn_err_set(err, EALREADY, "approval %s was %s already by %s", id,
                    cdn_approval_status_name(a.status), a.decided_by ? a.decided_by : "?");
    cdn_store_approval_clear(&a);
    return r;
}

int cdn_store_approval_list(struct cdn_store *s, const char *tenant, const char *sandbox,
                            bool include_decided, cdn_store_approval_fn fn, void *ud,
                            cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " APPROVAL_COLUMNS " FROM approvals WHERE (?1 IS NULL OR "
                           "tenant = ?1) AND (?2 IS NULL OR sandbox = ?2) AND (?3 OR status = ?4) "
                           "ORDER BY requested_ms, id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing the approvals");
    bind_text(st, 1, tenant);
    bind_text(st, 2, sandbox);
    sqlite3_bind_int(st, 3, include_decided);
    sqlite3_bind_int(st, 4, CDN_APPROVAL_PENDING);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct cdn_store_approval a;
        read_approval(st, &a);
        int r = fn(ud, &a);
        cdn_store_approval_clear(&a);
        if (r < 0)
            return r;
    }
    return rc == SQLITE_DONE ? 0 : db_err(s, err, "listing approvals");
}
