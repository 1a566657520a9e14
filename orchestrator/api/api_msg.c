/* SPDX-License-Identifier: Apache-2.0 */
/* The store's records (sandboxes, approvals) as cordon.v1 messages. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "approval.h"

static char *dup0(const char *s) { return strdup(s ? s : ""); }

Cordon__V1__Sandbox *api_msg_sandbox(const struct cdn_store_sandbox *sb) {
    Cordon__V1__Sandbox *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    cordon__v1__sandbox__init(m);
    m->id = dup0(sb->id);
    m->state = (Cordon__V1__SandboxState)sb->state;
    m->tenant = dup0(sb->tenant);
    m->repo = dup0(sb->repo);
    m->base_commit = dup0(sb->base);
    m->result_commit = dup0(sb->result);
    m->image = dup0(sb->image);
    m->accel = dup0(sb->accel);
    m->transport = dup0(sb->transport);
    m->created_unix_ms = sb->created_ms;
    m->expires_unix_ms = sb->expires_ms;
    m->error = dup0(sb->error);
    m->host = dup0(sb->host);
    m->retryable = sb->retryable;
    m->persist = sb->persist;
    m->owner = dup0(sb->persist ? (sb->owner ? sb->owner : sb->tenant) : NULL);
    m->paused = dup0(sb->state == CDN_SANDBOX_PAUSED ? sb->paused : NULL);
    m->review = dup0(sb->review);
    m->reviewed_by = dup0(sb->reviewed_by);
    m->review_comment = dup0(sb->review_comment);
    m->published = dup0(sb->published);
    json_error_t je;
    json_t *labels = sb->labels_json ? json_loads(sb->labels_json, 0, &je) : NULL;
    size_t n = json_object_size(labels);
    m->labels = n ? calloc(n, sizeof(*m->labels)) : NULL;
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v) {
        if (!m->labels || !json_is_string(v))
            continue;
        Cordon__V1__Sandbox__LabelsEntry *e = calloc(1, sizeof(*e));
        if (!e)
            break;
        cordon__v1__sandbox__labels_entry__init(e);
        e->key = strdup(k);
        e->value = strdup(json_string_value(v));
        m->labels[m->n_labels++] = e;
    }
    json_decref(labels);
    return m;
}

void api_msg_sandbox_free(Cordon__V1__Sandbox *m) {
    if (!m)
        return;
    free(m->id);
    free(m->tenant);
    free(m->repo);
    free(m->base_commit);
    free(m->result_commit);
    free(m->image);
    free(m->accel);
    free(m->transport);
    free(m->error);
    free(m->host);
    free(m->owner);
    free(m->paused);
    free(m->review);
    free(m->reviewed_by);
    free(m->review_comment);
    free(m->published);
    for (size_t i = 0; i < m->n_labels; i++) {
        free(m->labels[i]->key);
        free(m->labels[i]->value);
        free(m->labels[i]);
    }
    free(m->labels);
    free(m);
}

static char **strv_of(json_t *a, size_t *n) {
    *n = json_array_size(a);
    char **v = calloc(*n + 1, sizeof(char *));
    for (size_t i = 0; v && i < *n; i++)
        v[i] = dup0(json_string_value(json_array_get(a, i)));
    if (!v)
        *n = 0;
    return v;
}

Cordon__V1__Approval *api_msg_approval(const struct cdn_store_approval *a) {
    Cordon__V1__Approval *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    cordon__v1__approval__init(m);
    m->id = dup0(a->id);
    m->sandbox_id = dup0(a->sandbox);
    json_t *argv = json_loads(a->argv_json ? a->argv_json : "[]", 0, NULL);
    m->argv = strv_of(argv, &m->n_argv);
    json_decref(argv);
    /* enum cdn_approval_status is cordon.v1.ApprovalStatus less one */
    m->status = (Cordon__V1__ApprovalStatus)(a->status + 1);
    m->decided_by = dup0(a->decided_by);
    m->requested_unix_ms = a->requested_ms;
    m->decided_unix_ms = a->decided_ms;
    json_t *parts = json_loads(a->parts_json ? a->parts_json : "[]", 0, NULL);
    size_t n = json_array_size(parts);
    m->parts = n ? calloc(n, sizeof(*m->parts)) : NULL;
    for (size_t i = 0; m->parts && i < n; i++) {
        json_t *p = json_array_get(parts, i);
        Cordon__V1__ApprovalPart *q = calloc(1, sizeof(*q));
        if (!q)
            break;
        cordon__v1__approval_part__init(q);
        q->argv = strv_of(json_object_get(p, "argv"), &q->n_argv);
        q->action = dup0(json_string_value(json_object_get(p, "action")));
        q->rule = dup0(json_string_value(json_object_get(p, "rule")));
        q->reason = dup0(json_string_value(json_object_get(p, "reason")));
        m->parts[m->n_parts++] = q;
    }
    json_decref(parts);
    return m;
}

Cordon__V1__Approval *api_msg_approval_of(struct cdn_store *s, const char *tenant, const char *id) {
    struct cdn_store_approval a;
    if (cdn_store_approval_get(s, tenant, id, &a, NULL) < 0)
        return NULL;
    Cordon__V1__Approval *m = api_msg_approval(&a);
    cdn_store_approval_clear(&a);
    return m;
}

static void strv_free(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void api_msg_approval_free(Cordon__V1__Approval *m) {
    if (!m)
        return;
    free(m->id);
    free(m->sandbox_id);
    strv_free(m->argv, m->n_argv);
    free(m->decided_by);
    for (size_t i = 0; i < m->n_parts; i++) {
        strv_free(m->parts[i]->argv, m->parts[i]->n_argv);
        free(m->parts[i]->action);
        free(m->parts[i]->rule);
        free(m->parts[i]->reason);
        free(m->parts[i]);
    }
    free(m->parts);
    free(m);
}
