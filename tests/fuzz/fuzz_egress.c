/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the egress verdict on whatever host name and port the guest sends in an
 * EgressOpen. The input is "PORT(2 bytes) HOST": the verdict must always name a rule, a refusal
 * must say why, and an allowed host must be a normalized, valid one. */
#include <stdlib.h>
#include <string.h>

#include "egress.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct cdn_egress_rule v[] = {
        {.host = (char *)"*.example.com", .where = (char *)"r0", .allow = true},
        {.host = (char *)"10.0.0.0/8",
         .ports = {8080},
         .nports = 1,
         .where = (char *)"r1",
         .allow = true},
        {.host = (char *)"fd00::/8", .where = (char *)"r2", .allow = true},
        {.host = (char *)"bad.example.com", .where = (char *)"r3", .allow = false}};
    static const struct cdn_egress_rules rules = {.v = v, .n = 4};
    if (size < 2 || size > 400)
        return 0;
    char host[400];
    memcpy(host, data + 2, size - 2);
    host[size - 2] = '\0';
    struct cdn_egress_attempt a;
    memset(&a, 0, sizeof(a));
    cdn_egress_decide(&rules, host, (uint16_t)(data[0] << 8 | data[1]), &a);
    if (!a.rule[0] || (!a.allowed && !a.why[0]))
        abort();
    if (a.allowed)
        for (const char *p = a.host; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                abort();
    return 0;
}
