/* SPDX-License-Identifier: Apache-2.0 */
/* Reading an evidence folder back: manifest.json, with the audit trail's entries that came after
 * its last save appended (by their sequence number: an entry is never counted twice). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "ev_internal.h"
#include "fsutil.h"

int cdn_evidence_load(const char *dir, json_t **out, cdn_err **err) {
    *out = NULL;
    char path[4300];
    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    _cleanup_free_ char *text = NULL;
    size_t len;
    int r = cdn_read_file(path, CDN_EVIDENCE_MANIFEST_MAX, &text, &len, err);
    if (r < 0)
        return r;
    json_error_t je;
    json_t *m = json_loadb(text, len, 0, &je);
    if (!json_is_object(m)) {
        json_decref(m);
        return cdn_err_set(err, EPROTO, "%s:%d: not a manifest (%s)", path, je.line, je.text);
    }
    json_int_t saved = json_integer_value(json_object_get(json_object_get(m, "audit"), "lines"));
    snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
    _cleanup_free_ char *trail = NULL;
    r = cdn_read_file(path, CDN_EVIDENCE_AUDIT_MAX, &trail, &len, NULL);
    json_int_t last = saved;
    for (char *line = r == 0 ? trail : NULL, *end; line && *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end)
            break; /* a line cut short by a crash: not an entry */
        json_t *e = json_loadb(line, (size_t)(end - line), 0, &je);
        json_int_t seq = json_integer_value(json_object_get(e, "seq"));
        const char *key = json_string_value(json_object_get(e, "key"));
        json_t *value = json_object_get(e, "value");
        if (seq > last && key && value) { /* an event with a key is an entry of that array */
            json_t *a = json_object_get(m, key);
            if (!json_is_array(a)) {
                a = json_array();
                json_object_set_new(m, key, a);
            }
            json_array_append(a, value);
        }
        if (seq > last)
            last = seq;
        json_decref(e);
    }
    json_object_set_new(json_object_get(m, "audit"), "lines", json_integer(last));
    *out = m;
    return 0;
}
