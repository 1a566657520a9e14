/* SPDX-License-Identifier: Apache-2.0 */
/* The egress verdicts without any network: first matching rule wins, ports default to 80 and
 * 443, globs span labels, addresses and CIDRs match literals only, bad names are refused; and
 * the address classes that need a rule to name them. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "egress.h"
#include "policy.h"
#include "test.h"

static const char pol[] = "version: 1\n"
                          "network:\n"
                          "  egress:\n"
                          "    rules:\n"
                          "      - {host: evil.example.com, action: deny, reason: known bad}\n"
                          "      - {host: '*.example.com', purpose: docs}\n"
                          "      - {host: registry.npmjs.org, ports: [443], purpose: packages}\n"
                          "      - {host: 10.1.0.0/16, ports: [8080], purpose: api}\n";

static const char *verdict(const struct cdn_egress_rules *r, const char *host, uint16_t port) {
    static char out[900];
    struct cdn_egress_attempt a = {0};
    cdn_egress_decide(r, host, port, &a);
    snprintf(out, sizeof(out), "%s %s %s", a.allowed ? "allow" : "deny", a.rule,
             a.purpose[0] ? a.purpose : "-");
    return out;
}

TEST(rules_decide_in_order) {
    struct cdn_policy *p = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_policy_parse("p.yaml", pol, strlen(pol), &p, &err), err);
    const struct cdn_egress_rules *r = cdn_policy_egress(p);
    ASSERT_STREQ(verdict(r, "evil.example.com", 443), "deny network.egress.rules[0] (line 5) -");
    ASSERT_STREQ(verdict(r, "docs.example.com", 443),
                 "allow network.egress.rules[1] (line 6) docs");
    ASSERT_STREQ(verdict(r, "A.B.Example.COM.", 80), "allow network.egress.rules[1] (line 6) docs");
    ASSERT_STREQ(verdict(r, "example.com", 443), "deny network.egress.default -");
    ASSERT_STREQ(verdict(r, "docs.example.com", 22), "deny network.egress.default -");
    ASSERT_STREQ(verdict(r, "registry.npmjs.org", 80), "deny network.egress.default -");
    ASSERT_STREQ(verdict(r, "registry.npmjs.org", 443),
                 "allow network.egress.rules[2] (line 7) packages");
    ASSERT_STREQ(verdict(r, "10.1.2.3", 8080), "allow network.egress.rules[3] (line 8) api");
    ASSERT_STREQ(verdict(r, "10.2.0.1", 8080), "deny network.egress.default -");
    ASSERT_STREQ(verdict(r, "bad..name", 443), "deny cordon.host -");
    ASSERT_STREQ(verdict(r, "bad name", 443), "deny cordon.host -");
    struct cdn_egress_attempt a = {0};
    cdn_egress_decide(r, "evil.example.com", 443, &a);
    ASSERT_CONTAINS(a.why, "denied by network.egress.rules[0] (line 5): known bad");
    cdn_policy_free(p);
}

static const char *cls(const char *addr) {
    struct sockaddr_storage ss = {0};
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &s4->sin_addr);
    }
    const char *c = cdn_egress_address_class((struct sockaddr *)&ss);
    return c ? c : "public";
}

TEST(non_public_addresses_are_classified) {
    ASSERT_STREQ(cls("127.0.0.1"), "loopback");
    ASSERT_STREQ(cls("10.0.0.1"), "private");
    ASSERT_STREQ(cls("172.31.255.255"), "private");
    ASSERT_STREQ(cls("192.168.1.1"), "private");
    ASSERT_STREQ(cls("169.254.169.254"), "link-local"); /* cloud metadata */
    ASSERT_STREQ(cls("100.64.0.1"), "shared (CGNAT)");
    ASSERT_STREQ(cls("0.0.0.0"), "unspecified");
    ASSERT_STREQ(cls("224.0.0.1"), "multicast");
    ASSERT_STREQ(cls("::1"), "loopback");
    ASSERT_STREQ(cls("fe80::1"), "link-local");
    ASSERT_STREQ(cls("fd00::1"), "private");
    ASSERT_STREQ(cls("::ffff:127.0.0.1"), "loopback"); /* IPv4 inside IPv6 */
    ASSERT_STREQ(cls("64:ff9b::a00:1"), "private");    /* NAT64 of 10.0.0.1 */
    ASSERT_STREQ(cls("93.184.216.34"), "public");
    ASSERT_STREQ(cls("172.32.0.1"), "public");
    ASSERT_STREQ(cls("2606:2800:220:1::1"), "public");
}
