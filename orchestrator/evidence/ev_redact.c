/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_redactor: see redact.h. */
#include "redact.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct form {
    uint8_t *p;
    size_t n;
    size_t secret; /* index into names */
};

struct cdn_redactor {
    struct form *forms;
    size_t n_forms;
    char **names;
    size_t n_names;
    size_t longest;
};

int cdn_redactor_new(struct cdn_redactor **out, cdn_err **err) {
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : cdn_err_set(err, ENOMEM, "out of memory");
}

void cdn_redactor_free(struct cdn_redactor *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_forms; i++) {
        explicit_bzero(r->forms[i].p, r->forms[i].n);
        free(r->forms[i].p);
    }
    free(r->forms);
    for (size_t i = 0; i < r->n_names; i++)
        free(r->names[i]);
    free(r->names);
    free(r);
}

void cdn_redactor_freep(struct cdn_redactor **r) {
    cdn_redactor_free(*r);
    *r = NULL;
}

bool cdn_redactor_empty(const struct cdn_redactor *r) { return !r || r->n_forms == 0; }

/* Adds one form (owned, wiped later) unless it is too short or already there. */
static int add_form(struct cdn_redactor *r, size_t secret, uint8_t *p, size_t n) {
    bool dup = n < CDN_SECRET_MIN_BYTES;
    for (size_t i = 0; !dup && i < r->n_forms; i++)
        dup = r->forms[i].n == n && memcmp(r->forms[i].p, p, n) == 0;
    if (dup) {
        explicit_bzero(p, n);
        free(p);
        return 0;
    }
    struct form *v = realloc(r->forms, (r->n_forms + 1) * sizeof(*v));
    if (!v) {
        explicit_bzero(p, n);
        free(p);
        return -ENOMEM;
    }
    r->forms = v;
    r->forms[r->n_forms++] = (struct form){.p = p, .n = n, .secret = secret};
    if (n > r->longest)
        r->longest = n;
    return 0;
}

/* The base64 characters that depend only on the value when it sits `shift` bytes into a longer
 * encoded run (shift 0, 1, 2 covers every alignment). */
static int add_base64(struct cdn_redactor *r, size_t secret, const uint8_t *v, size_t len,
                      unsigned shift, bool url) {
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *alpha = url ? safe : std;
    size_t total = shift + len + 2, nchars = total * 8 / 6;
    uint8_t *buf = calloc(total, 1), *out = malloc(nchars + 1);
    if (!buf || !out) {
        free(buf);
        free(out);
        return -ENOMEM;
    }
    memcpy(buf + shift, v, len);
    size_t first = (8 * shift + 5) / 6, last = (8 * (shift + len) - 6) / 6, n = 0;
    for (size_t i = first; i <= last; i++) {
        size_t bit = 6 * i, byte = bit / 8, off = bit % 8;
        unsigned w = (unsigned)buf[byte] << 8 | (byte + 1 < total ? buf[byte + 1] : 0);
        out[n++] = alpha[(w >> (10 - off)) & 63];
    }
    explicit_bzero(buf, total);
    free(buf);
    return add_form(r, secret, out, n);
}

static int add_escaped(struct cdn_redactor *r, size_t secret, const uint8_t *v, size_t len,
                       bool json, bool lower) {
    uint8_t *out = malloc(len * 6 + 1);
    if (!out)
        return -ENOMEM;
    size_t n = 0;
    const char *hex = lower ? "0123456789abcdef" : "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        uint8_t c = v[i];
        if (json) {
            if (c == '"' || c == '\\') {
                out[n++] = '\\';
                out[n++] = c;
            } else if (c < 0x20) {
                n += (size_t)snprintf((char *)out + n, 7, "\\u%04x", c);
            } else {
                out[n++] = c;
            }
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   strchr("-._~", c)) {
            out[n++] = c;
        } else {
            out[n++] = '%';
            out[n++] = (uint8_t)hex[c >> 4];
            out[n++] = (uint8_t)hex[c & 15];
        }
    }
    return add_form(r, secret, out, n);
}

int cdn_redactor_add(struct cdn_redactor *r, const char *name, const uint8_t *value, size_t len,
                     cdn_err **err) {
    if (len < CDN_SECRET_MIN_BYTES || len > CDN_SECRET_MAX_BYTES)
        return cdn_err_set(err, EINVAL,
                           "secret '%s' is %zu bytes: it must be %u to %u bytes to be redacted "
                           "reliably",
                           name, len, CDN_SECRET_MIN_BYTES, CDN_SECRET_MAX_BYTES);
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("-_.", *p)))
            return cdn_err_set(err, EINVAL, "secret name '%s': letters, digits, '-', '_', '.'",
                               name);
    char **names = realloc(r->names, (r->n_names + 1) * sizeof(*names));
    if (!names)
        return cdn_err_set(err, ENOMEM, "out of memory");
    r->names = names;
    if (!(r->names[r->n_names] = strdup(name)))
        return cdn_err_set(err, ENOMEM, "out of memory");
    size_t id = r->n_names++;
    uint8_t *raw = malloc(len);
    if (!raw)
        return cdn_err_set(err, ENOMEM, "out of memory");
    memcpy(raw, value, len);
    int e = add_form(r, id, raw, len);
    for (unsigned shift = 0; e == 0 && shift < 3; shift++)
        for (int url = 0; e == 0 && url < 2; url++)
            e = add_base64(r, id, value, len, shift, url);
    if (e == 0)
        e = add_escaped(r, id, value, len, false, false);
    if (e == 0)
        e = add_escaped(r, id, value, len, false, true);
    if (e == 0)
        e = add_escaped(r, id, value, len, true, false);
    return e < 0 ? cdn_err_set(err, ENOMEM, "out of memory") : 0;
}

/* The earliest form at or after p in [p, end): its start, or NULL. */
static const uint8_t *earliest(const struct cdn_redactor *r, const uint8_t *p, const uint8_t *end,
                               const struct form **which) {
    const uint8_t *best = NULL;
    for (size_t i = 0; i < r->n_forms; i++) {
        const struct form *f = &r->forms[i];
        const uint8_t *m =
            (size_t)(end - p) >= f->n ? memmem(p, (size_t)(end - p), f->p, f->n) : NULL;
        if (m && (!best || m < best || (m == best && f->n > (*which)->n))) {
            best = m;
            *which = f;
        }
    }
    return best;
}

/* Redacts [p, p+n) into sink; the last `keep` bytes (with no form ending inside the emitted
 * part) are left unprocessed: returns how many bytes were consumed. */
static int run(const struct cdn_redactor *r, const uint8_t *p, size_t n, size_t keep,
               cdn_redact_sink sink, void *ud, size_t *consumed) {
    const uint8_t *cur = p, *end = p + n, *cut = n > keep ? end - keep : p;
    int rc = 0;
    while (rc >= 0) {
        const struct form *f = NULL;
        const uint8_t *m = earliest(r, cur, end, &f);
        if (!m || m >= cut) {
            if (cut > cur)
                rc = sink(ud, cur, (size_t)(cut - cur));
            cur = cut > cur ? cut : cur;
            break;
        }
        if (m > cur)
            rc = sink(ud, cur, (size_t)(m - cur));
        char rep[96];
        int rn = snprintf(rep, sizeof(rep), "[REDACTED:%s]", r->names[f->secret]);
        if (rc >= 0)
            rc = sink(ud, (const uint8_t *)rep, (size_t)rn);
        cur = m + f->n;
        if (cur > cut)
            cut = cur;
    }
    *consumed = (size_t)(cur - p);
    return rc;
}

struct collect {
    struct cdn_buf b;
    bool failed;
};
static int collect(void *ud, const uint8_t *p, size_t n) {
    struct collect *c = ud;
    if (cdn_buf_append(&c->b, p, n) < 0)
        c->failed = true;
    return 0;
}

char *cdn_redact(const struct cdn_redactor *r, const char *s, size_t len, size_t *out_len) {
    struct collect c = {0};
    size_t used;
    if (cdn_redactor_empty(r))
        collect(&c, (const uint8_t *)s, len);
    else
        run(r, (const uint8_t *)s, len, 0, collect, &c, &used);
    if (c.failed || cdn_buf_append(&c.b, "", 1) < 0) {
        cdn_buf_free(&c.b);
        return NULL;
    }
    *out_len = cdn_buf_len(&c.b) - 1;
    return (char *)c.b.data; /* head is 0: nothing was consumed */
}

int cdn_redact_feed(const struct cdn_redactor *r, struct cdn_redact_stream *st, const uint8_t *p,
                    size_t n, bool final, cdn_redact_sink sink, void *ud) {
    if (cdn_redactor_empty(r))
        return n ? sink(ud, p, n) : 0;
    size_t keep = final ? 0 : r->longest - 1, used;
    int rc;
    if (cdn_buf_len(&st->held) == 0 && n > keep) {
        rc = run(r, p, n, keep, sink, ud, &used); /* the common case: no copy */
        if (rc >= 0 && used < n && cdn_buf_append(&st->held, p + used, n - used) < 0)
            return -ENOMEM;
        return rc;
    }
    if (n && cdn_buf_append(&st->held, p, n) < 0)
        return -ENOMEM;
    rc = run(r, cdn_buf_head(&st->held), cdn_buf_len(&st->held), keep, sink, ud, &used);
    cdn_buf_consume(&st->held, used);
    return rc;
}

void cdn_redact_stream_clear(struct cdn_redact_stream *st) {
    if (st->held.data)
        explicit_bzero(st->held.data, st->held.cap);
    cdn_buf_free(&st->held);
}
