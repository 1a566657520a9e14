/* SPDX-License-Identifier: Apache-2.0 */
/* What the store's files share (internal): the connection, its lock and SQLite helpers. */
#pragma once

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#include "cleanup.h"
#include "store.h"

struct cdn_store {
    sqlite3 *db;
    char *path;
    /* One connection shared by cordond's threads: every call holds the lock (recursive: a
     * listing's callback may call back in). */
    pthread_mutex_t mu;
    void (*on_event)(void *ud, const char *tenant);
    void *on_event_ud;
};

void store_unlock(struct cdn_store **s);
/* Holds the store's lock to the end of the enclosing block. */
#define LOCKED(s)                                                                                  \
    pthread_mutex_lock(&(s)->mu);                                                                  \
    __attribute__((cleanup(store_unlock), unused)) struct cdn_store *locked_ = (s)

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize)

/* An error naming the store, what was being done and SQLite's message (ENOSPC, EBUSY or EIO). */
int db_err(struct cdn_store *s, cdn_err **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int64_t now_ms(void);
/* v, or NULL as SQL NULL. */
void bind_text(sqlite3_stmt *st, int i, const char *v);
/* Column i as a string of the caller's (NULL for SQL NULL). */
char *col_dup(sqlite3_stmt *st, int i);
