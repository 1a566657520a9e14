/* SPDX-License-Identifier: Apache-2.0 */
/* The audit trail's chain, checked: each line's place (seq) and the SHA-256 of the line before it
 * (prev), then the length and head a signed manifest recorded. The trail is whatever is on disk:
 * any bytes, bounded by the caller. */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "evidence.h"

void cdn_sha256_hex(const void *p, size_t n, char hex[65]) {
    unsigned char md[32];
    unsigned len = 0;
    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
}

struct line {
    const char *text; /* points into the trail */
    size_t len;
    json_t *obj;
    json_int_t seq;
};

static void say(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

/* The first fault of the chain (lines numbered from 1), or "" when it holds. */
static void check_chain(struct line *l, size_t n, json_int_t want_lines, const char *want_head,
                        char *why, size_t size) {
    char prev[65] = CDN_AUDIT_FIRST_PREV;
    for (size_t i = 0; i < n; i++) {
        json_int_t at = (json_int_t)i + 1;
        if (!l[i].obj) {
            say(why, size, "audit.jsonl:%lld: edited (not a JSON line)", (long long)at);
            return;
        }
        if (l[i].seq != at) {
            bool later = false; /* the line that belongs here comes later: an order changed */
            for (size_t j = i + 1; j < n; j++)
                later = later || l[j].seq == at;
            if (later || l[i].seq < at)
                say(why, size, "audit.jsonl:%lld: reordered (seq %lld where %lld belongs)",
                    (long long)at, (long long)l[i].seq, (long long)at);
            else
                say(why, size, "audit.jsonl:%lld: removed (the line there now is seq %lld)",
                    (long long)at, (long long)l[i].seq);
            return;
        }
        const char *p = json_string_value(json_object_get(l[i].obj, "prev"));
        if (!p || strcmp(p, prev) != 0) {
            say(why, size, "audit.jsonl:%lld: edited (line %lld records another hash for it)",
                (long long)at - 1, (long long)at);
            return;
        }
        cdn_sha256_hex(l[i].text, l[i].len, prev);
    }
    if ((json_int_t)n < want_lines)
        say(why, size, "audit.jsonl:%lld: removed (the signed manifest records %lld lines)",
            (long long)n + 1, (long long)want_lines);
    else if ((json_int_t)n > want_lines)
        say(why, size, "audit.jsonl:%lld: added after the manifest was signed", (long long)n);
    else if (strcmp(prev, want_head) != 0)
        say(why, size, "audit.jsonl:%lld: edited (the chain's head is not the signed one)",
            (long long)n);
}

int cdn_audit_check(const char *trail, size_t tlen, long long want_lines, const char *want_head,
                    char *why, size_t size) {
    why[0] = '\0';
    size_t cap = 64, count = 0;
    _cleanup_free_ struct line *l = calloc(cap, sizeof(*l));
    const char *end_all = trail + tlen;
    for (const char *p = trail, *end; l && p < end_all; p = end + 1) {
        end = memchr(p, '\n', (size_t)(end_all - p));
        if (!end)
            end = end_all; /* a last line without its end: still a line to check */
        if (count == cap) {
            struct line *g = realloc(l, 2 * cap * sizeof(*l));
            if (!g) {
                for (size_t i = 0; i < count; i++)
                    json_decref(l[i].obj);
                return -ENOMEM;
            }
            l = g;
            cap *= 2;
        }
        l[count] = (struct line){.text = p, .len = (size_t)(end - p)};
        l[count].obj = json_loadb(p, l[count].len, 0, NULL);
        l[count].seq = json_integer_value(json_object_get(l[count].obj, "seq"));
        count++;
    }
    if (!l)
        return -ENOMEM;
    check_chain(l, count, want_lines, want_head, why, size);
    for (size_t i = 0; i < count; i++)
        json_decref(l[i].obj);
    return 0;
}
