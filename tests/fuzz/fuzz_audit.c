/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the audit trail's checker (what `cordon audit verify` runs on whatever bytes
 * audit.jsonl holds). The input is a trail; the signed length and head it is checked against are
 * its own first bytes' values. Checks the checker's promises: it never fails but for memory, its
 * verdict is a bounded string, and a verdict of "holds" means the last line's hash is the head. */
#include <stdlib.h>
#include <string.h>

#include "evidence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long long want = size ? data[0] % 8 : 0;
    char head[65] = "0000000000000000000000000000000000000000000000000000000000000000";
    if (size > 1)
        cdn_sha256_hex(data + 1, size - 1, head); /* rarely right: the chain must still hold */
    char why[256];
    memset(why, 'x', sizeof(why));
    if (cdn_audit_check((const char *)data, size, want, head, why, sizeof(why)) < 0)
        return 0;
    if (!memchr(why, '\0', sizeof(why)))
        abort();
    if (!why[0] && want == 0 && size > 0)
        abort(); /* a non-empty trail cannot match a manifest that records no line */
    return 0;
}
