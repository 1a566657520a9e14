/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_store over SQLite. One connection per cdn_store (cordond owns one); statements are
 * prepared per call: the rates here are those of sandboxes and events, not of output bytes. */
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "store_internal.h"

void store_unlock(struct cdn_store **s) { pthread_mutex_unlock(&(*s)->mu); }

/* After a commit that logged an event: watchers are told (outside no lock of theirs). */
static void notify(struct cdn_store *s, const char *tenant) {
    if (s->on_event)
        s->on_event(s->on_event_ud, tenant);
}

void cdn_store_on_event(struct cdn_store *s, void (*fn)(void *ud, const char *tenant), void *ud) {
    LOCKED(s);
    s->on_event = fn;
    s->on_event_ud = ud;
}

static const char *const state_names[] = {"unspecified", "queued",  "booting", "ready",
                                          "stopping",    "stopped", "failed",  "paused"};

const char *cdn_sandbox_state_name(enum cdn_sandbox_state s) {
    return (unsigned)s < 8 ? state_names[s] : "unknown";
}

int db_err(struct cdn_store *s, cdn_err **err, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    int code = sqlite3_errcode(s->db);
    return cdn_err_set(err,
                       code == SQLITE_FULL   ? ENOSPC
                       : code == SQLITE_BUSY ? EBUSY
                                             : EIO,
                       "store %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Schema versions, applied in order inside one transaction each (PRAGMA user_version). */
static const char *const migrations[] = {
    "CREATE TABLE sandboxes ("
    "  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, state INTEGER NOT NULL,"
    "  repo TEXT, ref TEXT, image TEXT, policy TEXT, labels TEXT, error TEXT,"
    "  base TEXT, result TEXT, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);"
    "CREATE INDEX sandboxes_tenant ON sandboxes(tenant, created_ms);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, sandbox TEXT NOT NULL, tenant TEXT NOT NULL,"
    "  unix_ms INTEGER NOT NULL, state INTEGER NOT NULL, message TEXT);"
    "CREATE INDEX events_tenant ON events(tenant, id);"
    "CREATE TABLE commands ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, sandbox TEXT NOT NULL REFERENCES sandboxes(id)"
    "  ON DELETE CASCADE, argv TEXT NOT NULL, state TEXT NOT NULL, exit_code INTEGER,"
    "  signal INTEGER, started_ms INTEGER, ended_ms INTEGER);",
    /* 2: what a queued sandbox needs to start after a restart, and how it runs. */
    "ALTER TABLE sandboxes ADD COLUMN spec TEXT;"
    "ALTER TABLE sandboxes ADD COLUMN accel TEXT;"
    "ALTER TABLE sandboxes ADD COLUMN transport TEXT;"
    "CREATE INDEX commands_sandbox ON commands(sandbox, id);",
    /* 3: commands waiting for a person (status: enum cdn_approval_status) */
    "CREATE TABLE approvals ("
    "  id TEXT PRIMARY KEY, sandbox TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,"
    "  tenant TEXT NOT NULL, argv TEXT NOT NULL, parts TEXT NOT NULL, status INTEGER NOT NULL,"
    "  requested_ms INTEGER NOT NULL, decided_by TEXT, decided_ms INTEGER);"
    "CREATE INDEX approvals_tenant ON approvals(tenant, requested_ms);",
    /* 4: where it runs, and whether it failed for reasons outside it (safe to run again) */
    "ALTER TABLE sandboxes ADD COLUMN host TEXT;"
    "ALTER TABLE sandboxes ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0;",
    /* 5: sessions: kept (persist) with an owner; where a paused one's memory is */
    "ALTER TABLE sandboxes ADD COLUMN owner TEXT;"
    "ALTER TABLE sandboxes ADD COLUMN persist INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sandboxes ADD COLUMN paused TEXT;",
    /* 6: the review of its result: awaiting, approved or rejected, by whom, and where it went */
    "ALTER TABLE sandboxes ADD COLUMN review TEXT;"
    "ALTER TABLE sandboxes ADD COLUMN reviewed_by TEXT;"
    "ALTER TABLE sandboxes ADD COLUMN review_comment TEXT;"
    "ALTER TABLE sandboxes ADD COLUMN published TEXT;",
};

static int exec_sql(struct cdn_store *s, const char *sql, cdn_err **err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = cdn_err_set(err, EIO, "store %s: %s", s->path, msg ? msg : "error");
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static int migrate(struct cdn_store *s, cdn_err **err) {
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        return db_err(s, err, "reading the schema version");
    int have = sqlite3_column_int(st, 0);
    int want = (int)(sizeof(migrations) / sizeof(migrations[0]));
    if (have > want)
        return cdn_err_set(err, EPROTO,
                           "store %s: schema version %d is newer than this cordond's (%d)", s->path,
                           have, want);
    for (int v = have; v < want; v++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d;", v + 1);
        int r = exec_sql(s, "BEGIN IMMEDIATE", err);
        if (r == 0 && (r = exec_sql(s, migrations[v], err)) == 0 &&
            (r = exec_sql(s, bump, err)) == 0)
            r = exec_sql(s, "COMMIT", err);
        if (r < 0) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return r;
        }
    }
    return 0;
}

int cdn_store_open(const char *path, struct cdn_store **out, cdn_err **err) {
    _cleanup_(cdn_store_closep) struct cdn_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(path)))
        return cdn_err_set(err, ENOMEM, "out of memory");
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        return cdn_err_set(err, EIO, "store %s: %s", path,
                           s->db ? sqlite3_errmsg(s->db) : "cannot open");
    sqlite3_busy_timeout(s->db, 5000);
    int r;
    /* WAL, synced at checkpoints: a commit survives the daemon being killed (kill -9) the moment
     * it returns; a power cut may lose the last ones, never the database. */
    if ((r = exec_sql(s,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                      "PRAGMA foreign_keys=ON;",
                      err)) < 0 ||
        (r = migrate(s, err)) < 0)
        return r;
    *out = TAKE_PTR(s);
    return 0;
}

void cdn_store_close(struct cdn_store *s) {
    if (!s)
        return;
    if (s->db)
        sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

void cdn_store_closep(struct cdn_store **s) {
    cdn_store_close(*s);
    *s = NULL;
}

void cdn_store_sandbox_clear(struct cdn_store_sandbox *sb) {
    char **f[] = {&sb->tenant,      &sb->repo,           &sb->ref,      &sb->image,
                  &sb->policy,      &sb->labels_json,    &sb->error,    &sb->base,
                  &sb->result,      &sb->spec_json,      &sb->accel,    &sb->transport,
                  &sb->host,        &sb->owner,          &sb->paused,   &sb->review,
                  &sb->reviewed_by, &sb->review_comment, &sb->published};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        free(*f[i]);
        *f[i] = NULL;
    }
}

void bind_text(sqlite3_stmt *st, int i, const char *v) {
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static int add_event(struct cdn_store *s, const char *tenant, const char *id,
                     enum cdn_sandbox_state state, const char *msg, cdn_err **err) {
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO events(sandbox, tenant, unix_ms, state, message) "
                           "VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing an event");
    bind_text(st, 1, id);
    bind_text(st, 2, tenant);
    sqlite3_bind_int64(st, 3, now_ms());
    sqlite3_bind_int(st, 4, (int)state);
    bind_text(st, 5, msg);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "logging an event");
}

/* Runs body inside BEGIN IMMEDIATE ... COMMIT, rolling back on failure. */
static int in_txn(struct cdn_store *s, int (*body)(struct cdn_store *, void *, cdn_err **),
                  void *ud, cdn_err **err) {
    int r = exec_sql(s, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    r = body(s, ud, err);
    if (r == 0)
        r = exec_sql(s, "COMMIT", err);
    if (r < 0)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

static int create_body(struct cdn_store *s, void *ud, cdn_err **err) {
    struct cdn_store_sandbox *sb = ud;
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO sandboxes(id, tenant, state, repo, ref, image, policy, "
                           "labels, created_ms, expires_ms, spec, owner, persist) VALUES "
                           "(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a sandbox");
    bind_text(st, 1, sb->id);
    bind_text(st, 2, sb->tenant);
    sqlite3_bind_int(st, 3, CDN_SANDBOX_QUEUED);
    bind_text(st, 4, sb->repo);
    bind_text(st, 5, sb->ref);
    bind_text(st, 6, sb->image);
    bind_text(st, 7, sb->policy);
    bind_text(st, 8, sb->labels_json);
    sqlite3_bind_int64(st, 9, sb->created_ms);
    sqlite3_bind_int64(st, 10, sb->expires_ms);
    bind_text(st, 11, sb->spec_json);
    bind_text(st, 12, sb->owner);
    sqlite3_bind_int(st, 13, sb->persist);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_err(s, err, "creating sandbox %s", sb->id);
    return add_event(s, sb->tenant, sb->id, CDN_SANDBOX_QUEUED, "created", err);
}

int cdn_store_sandbox_create(struct cdn_store *s, struct cdn_store_sandbox *sb, cdn_err **err) {
    if (!sb->tenant || !*sb->tenant)
        return cdn_err_set(err, EINVAL, "a sandbox needs a tenant");
    uint8_t raw[8];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return cdn_err_set(err, errno, "getrandom: %m");
    for (int i = 0; i < 8; i++)
        snprintf(sb->id + 2 * i, 3, "%02x", raw[i]);
    sb->state = CDN_SANDBOX_QUEUED;
    if (!sb->created_ms)
        sb->created_ms = now_ms();
    LOCKED(s);
    int r = in_txn(s, create_body, sb, err);
    if (r == 0)
        notify(s, sb->tenant);
    return r;
}

char *col_dup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

#define SANDBOX_COLUMNS                                                                            \
    "id, tenant, state, repo, ref, image, policy, labels, error, base, result, created_ms, "       \
    "expires_ms, spec, accel, transport, host, retryable, owner, persist, paused, review, "        \
    "reviewed_by, review_comment, published"

static void read_row(sqlite3_stmt *st, struct cdn_store_sandbox *sb) {
    *sb = (struct cdn_store_sandbox){0};
    const unsigned char *id = sqlite3_column_text(st, 0);
    snprintf(sb->id, sizeof(sb->id), "%s", id ? (const char *)id : "");
    sb->tenant = col_dup(st, 1);
    sb->state = (enum cdn_sandbox_state)sqlite3_column_int(st, 2);
    sb->repo = col_dup(st, 3);
    sb->ref = col_dup(st, 4);
    sb->image = col_dup(st, 5);
    sb->policy = col_dup(st, 6);
    sb->labels_json = col_dup(st, 7);
    sb->error = col_dup(st, 8);
    sb->base = col_dup(st, 9);
    sb->result = col_dup(st, 10);
    sb->created_ms = sqlite3_column_int64(st, 11);
    sb->expires_ms = sqlite3_column_int64(st, 12);
    sb->spec_json = col_dup(st, 13);
    sb->accel = col_dup(st, 14);
    sb->transport = col_dup(st, 15);
    sb->host = col_dup(st, 16);
    sb->retryable = sqlite3_column_int(st, 17) != 0;
    sb->owner = col_dup(st, 18);
    sb->persist = sqlite3_column_int(st, 19) != 0;
    sb->paused = col_dup(st, 20);
    sb->review = col_dup(st, 21);
    sb->reviewed_by = col_dup(st, 22);
    sb->review_comment = col_dup(st, 23);
    sb->published = col_dup(st, 24);
}

int cdn_store_sandbox_get(struct cdn_store *s, const char *tenant, const char *id,
                          struct cdn_store_sandbox *out, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " SANDBOX_COLUMNS
                           " FROM sandboxes WHERE id = ? AND (?2 IS NULL OR tenant = ?2)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a lookup");
    bind_text(st, 1, id);
    bind_text(st, 2, tenant);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return cdn_err_set(err, ENOENT, "no sandbox %s", id);
    if (rc != SQLITE_ROW)
        return db_err(s, err, "reading sandbox %s", id);
    read_row(st, out);
    return 0;
}

struct state_change {
    const char *tenant, *id, *error;
    enum cdn_sandbox_state to;
};

static int state_body(struct cdn_store *s, void *ud, cdn_err **err) {
    struct state_change *c = ud;
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT state FROM sandboxes WHERE id = ? AND tenant = ?", -1, &q,
                           NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a state change");
    bind_text(q, 1, c->id);
    bind_text(q, 2, c->tenant);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        return cdn_err_set(err, ENOENT, "no sandbox %s", c->id);
    if (rc != SQLITE_ROW)
        return db_err(s, err, "reading sandbox %s", c->id);
    enum cdn_sandbox_state from = (enum cdn_sandbox_state)sqlite3_column_int(q, 0);
    if (from == CDN_SANDBOX_STOPPED || from == CDN_SANDBOX_FAILED)
        return cdn_err_set(err, EINVAL, "sandbox %s is %s already", c->id,
                           cdn_sandbox_state_name(from));
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *u = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE sandboxes SET state = ?, error = coalesce(?, error) "
                           "WHERE id = ? AND tenant = ?",
                           -1, &u, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a state change");
    sqlite3_bind_int(u, 1, (int)c->to);
    bind_text(u, 2, c->error);
    bind_text(u, 3, c->id);
    bind_text(u, 4, c->tenant);
    if (sqlite3_step(u) != SQLITE_DONE)
        return db_err(s, err, "changing sandbox %s", c->id);
    return add_event(s, c->tenant, c->id, c->to, c->error, err);
}

int cdn_store_sandbox_set_state(struct cdn_store *s, const char *tenant, const char *id,
                                enum cdn_sandbox_state to, const char *error, cdn_err **err) {
    struct state_change c = {.tenant = tenant, .id = id, .to = to, .error = error};
    LOCKED(s);
    int r = in_txn(s, state_body, &c, err);
    if (r == 0)
        notify(s, tenant);
    return r;
}

int cdn_store_sandbox_list(struct cdn_store *s, const char *tenant, unsigned states_mask,
                           cdn_store_sandbox_fn fn, void *ud, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE (?1 IS NULL OR "
                           "tenant = ?1) ORDER BY created_ms, id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a listing");
    bind_text(st, 1, tenant);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct cdn_store_sandbox sb;
        read_row(st, &sb);
        int r = 0;
        if (!states_mask || (states_mask & (1u << sb.state)))
            r = fn(ud, &sb);
        cdn_store_sandbox_clear(&sb);
        if (r < 0)
            return r;
    }
    return rc == SQLITE_DONE ? 0 : db_err(s, err, "listing sandboxes");
}

int cdn_store_sandbox_delete(struct cdn_store *s, const char *tenant, const char *id,
                             cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM sandboxes WHERE id = ? AND tenant = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a delete");
    bind_text(st, 1, id);
    bind_text(st, 2, tenant);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_err(s, err, "deleting sandbox %s", id);
    return sqlite3_changes(s->db) ? 0 : cdn_err_set(err, ENOENT, "no sandbox %s", id);
}

int cdn_store_events(struct cdn_store *s, const char *tenant, const char *sandbox_id,
                     uint64_t after_id, cdn_store_event_fn fn, void *ud, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT id, sandbox, unix_ms, state, message FROM events WHERE "
            "(?1 IS NULL OR tenant = ?1) AND id > ?2 AND (?3 IS NULL OR sandbox = ?3) "
            "ORDER BY id",
            -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing the events");
    bind_text(st, 1, tenant);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)after_id);
    bind_text(st, 3, sandbox_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct cdn_store_event ev = {
            .id = (uint64_t)sqlite3_column_int64(st, 0),
            .sandbox_id = (const char *)sqlite3_column_text(st, 1),
            .unix_ms = sqlite3_column_int64(st, 2),
            .state = (enum cdn_sandbox_state)sqlite3_column_int(st, 3),
            .message = (const char *)sqlite3_column_text(st, 4),
        };
        int r = fn(ud, &ev);
        if (r < 0)
            return r;
    }
    return rc == SQLITE_DONE ? 0 : db_err(s, err, "reading events");
}

struct recovery {
    struct cdn_store *s;
    cdn_store_sandbox_fn fn;
    void *ud;
    int marked;
    cdn_err **err;
};

static int recover_one(void *ud, const struct cdn_store_sandbox *sb) {
    struct recovery *rc = ud;
    /* A session saved to disk lost nothing of its work: its result was taken when it paused. */
    bool saved = sb->state == CDN_SANDBOX_PAUSED && sb->paused && !strcmp(sb->paused, "disk");
    int r = cdn_store_sandbox_set_state(
        rc->s, sb->tenant, sb->id, saved ? CDN_SANDBOX_STOPPED : CDN_SANDBOX_FAILED,
        saved ? "cordond restarted while it was paused on disk: its saved memory is discarded; "
                "its evidence and task branch as of the pause are kept"
        : sb->state == CDN_SANDBOX_PAUSED
            ? "cordond restarted while it was paused in memory: the sandbox's VM is gone"
            : "cordond restarted: the sandbox's VM is gone",
        rc->err);
    if (r < 0)
        return r;
    rc->marked++;
    return rc->fn ? rc->fn(rc->ud, sb) : 0;
}

int cdn_store_recover(struct cdn_store *s, cdn_store_sandbox_fn fn, void *ud, cdn_err **err) {
    LOCKED(s);
    struct recovery rc = {.s = s, .fn = fn, .ud = ud, .err = err};
    unsigned lost = (1u << CDN_SANDBOX_BOOTING) | (1u << CDN_SANDBOX_READY) |
                    (1u << CDN_SANDBOX_STOPPING) | (1u << CDN_SANDBOX_PAUSED);
    int r = cdn_store_sandbox_list(s, NULL, lost, recover_one, &rc, err);
    if (r < 0)
        return r;
    /* Their commands went with the old daemon: nobody can be waiting for these any more. */
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE approvals SET status = ?, decided_by = 'nobody (cordond "
                           "restarted)', decided_ms = ? WHERE status = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing the approvals' expiry");
    sqlite3_bind_int(st, 1, CDN_APPROVAL_EXPIRED);
    sqlite3_bind_int64(st, 2, now_ms());
    sqlite3_bind_int(st, 3, CDN_APPROVAL_PENDING);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_err(s, err, "expiring the approvals");
    return rc.marked;
}

/* A one-statement update of a sandbox's columns (NULL values leave a column as it is). */
int cdn_store_sandbox_update(struct cdn_store *s, const char *id, const char *base,
                             const char *result, const char *accel, const char *transport,
                             cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE sandboxes SET base = coalesce(?, base), result = coalesce(?, "
                           "result), accel = coalesce(?, accel), transport = coalesce(?, "
                           "transport) WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing an update");
    bind_text(st, 1, base);
    bind_text(st, 2, result);
    bind_text(st, 3, accel);
    bind_text(st, 4, transport);
    bind_text(st, 5, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "updating sandbox %s", id);
}

int cdn_store_sandbox_set_host(struct cdn_store *s, const char *id, const char *host,
                               bool retryable, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            s->db, "UPDATE sandboxes SET host = coalesce(?, host), retryable = ? WHERE id = ?", -1,
            &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing an update");
    bind_text(st, 1, host);
    sqlite3_bind_int(st, 2, retryable);
    bind_text(st, 3, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "updating sandbox %s", id);
}

int cdn_store_sandbox_set_expiry(struct cdn_store *s, const char *id, int64_t expires_ms,
                                 cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "UPDATE sandboxes SET expires_ms = ? WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(s, err, "preparing an update");
    sqlite3_bind_int64(st, 1, expires_ms);
    bind_text(st, 2, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "updating sandbox %s", id);
}

int cdn_store_sandbox_set_paused(struct cdn_store *s, const char *id, const char *where,
                                 cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "UPDATE sandboxes SET paused = ? WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return db_err(s, err, "preparing an update");
    bind_text(st, 1, where);
    bind_text(st, 2, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "updating sandbox %s", id);
}

int cdn_store_sandbox_set_review(struct cdn_store *s, const char *id, const char *review,
                                 const char *by, const char *comment, const char *published,
                                 cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE sandboxes SET review = ?, reviewed_by = ?, review_comment = ?, "
                           "published = ? WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing an update");
    bind_text(st, 1, review);
    bind_text(st, 2, by);
    bind_text(st, 3, comment);
    bind_text(st, 4, published);
    bind_text(st, 5, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "updating sandbox %s", id);
}

int cdn_store_command_begin(struct cdn_store *s, const char *sandbox, const char *argv_json,
                            int64_t *cmd_id, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO commands(sandbox, argv, state, started_ms) VALUES (?, ?, "
                           "'running', ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a command");
    bind_text(st, 1, sandbox);
    bind_text(st, 2, argv_json);
    sqlite3_bind_int64(st, 3, now_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_err(s, err, "recording a command of %s", sandbox);
    *cmd_id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int cdn_store_command_end(struct cdn_store *s, int64_t cmd_id, const char *state, int exit_code,
                          int signo, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE commands SET state = ?, exit_code = ?, signal = ?, ended_ms = ? "
                           "WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "preparing a command's end");
    bind_text(st, 1, state);
    sqlite3_bind_int(st, 2, exit_code);
    sqlite3_bind_int(st, 3, signo);
    sqlite3_bind_int64(st, 4, now_ms());
    sqlite3_bind_int64(st, 5, cmd_id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, err, "recording a command's end");
}

int cdn_store_commands_interrupted(struct cdn_store *s, cdn_err **err) {
    LOCKED(s);
    return exec_sql(s,
                    "UPDATE commands SET state = 'interrupted' WHERE state = 'running' OR state = "
                    "'queued'",
                    err);
}

int cdn_store_last_event_id(struct cdn_store *s, uint64_t *id, cdn_err **err) {
    LOCKED(s);
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT coalesce(max(id), 0) FROM events", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        return db_err(s, err, "reading the last event");
    *id = (uint64_t)sqlite3_column_int64(st, 0);
    return 0;
}
