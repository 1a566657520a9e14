/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the policy parser and the shell splitter. The input up to its first NUL is a
 * policy file; the rest (or, with no NUL, all of it) is a shell string decided as `bash -c STR`
 * under that policy when it parsed, else under a fixed one. Checks the parser's promises: a
 * failure always carries a FILE:LINE:COL message and never a policy; a decision's action is the
 * strictest of its parts. */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

static const char fixed[] = "version: 1\n"
                            "commands:\n"
                            "  default: approve\n"
                            "  rules:\n"
                            "    - {match: 'rm -rf /**', action: deny}\n"
                            "    - {match: 'make **', action: allow}\n"
                            "    - {match: {program: 'g*', args: ['?', '**']}, action: allow}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *nul = memchr(data, 0, size);
    size_t plen = nul ? (size_t)(nul - (const char *)data) : size;
    struct cdn_policy *p = NULL, *base = NULL;
    cdn_err *err = NULL;
    int r = cdn_policy_parse("f.yaml", (const char *)data, plen, &p, &err);
    if (r < 0) {
        if (p || !err || strncmp(cdn_err_msg(err), "f.yaml", 6) != 0)
            abort();
        cdn_err_free(err);
        err = NULL;
    }
    if (cdn_policy_parse("fixed.yaml", fixed, sizeof(fixed) - 1, &base, &err) < 0)
        abort();
    const char *s0 = nul ? nul + 1 : (const char *)data;
    size_t slen = nul ? size - plen - 1 : size;
    char *s = malloc(slen + 1);
    if (!s)
        abort();
    memcpy(s, s0, slen);
    s[slen] = '\0';
    const char *argv[] = {"bash", "-c", s};
    struct cdn_policy_decision d;
    if (cdn_policy_decide(p ? p : base, argv, 3, &d, &err) == 0) {
        enum cdn_policy_action worst = CDN_POLICY_ALLOW;
        for (size_t i = 0; i < d.n; i++) {
            if (!d.parts[i].rule)
                abort();
            if (d.parts[i].action > worst)
                worst = d.parts[i].action;
        }
        if (d.n && worst != d.action)
            abort();
        cdn_policy_decision_free(&d);
    } else {
        cdn_err_free(err);
    }
    free(s);
    cdn_policy_free(p);
    cdn_policy_free(base);
    return 0;
}
