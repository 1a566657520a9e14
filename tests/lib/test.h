/* SPDX-License-Identifier: Apache-2.0 */
/* A small test framework: each TEST runs in its own forked child with a time limit, and every
 * assertion prints both sides when it fails (like systemd's tests.h). */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define TEST_EXIT_SKIP 77

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, int timeout_s);
/* Runs the registered tests (or those named in argv); prints PASS/FAIL/SKIP lines. */
int test_main(int argc, char **argv);
__attribute__((noreturn)) void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
__attribute__((noreturn)) void test_skip(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#define TEST_T(name, timeout_s)                                                                    \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void register_##name(void) {                               \
        test_register(#name, test_##name, timeout_s);                                              \
    }                                                                                              \
    static void test_##name(void)
#define TEST(name) TEST_T(name, 60)

#define FAIL(...) test_fail(__FILE__, __LINE__, __VA_ARGS__)
#define SKIP(...) test_skip(__VA_ARGS__)

#define ASSERT_TRUE(x)                                                                             \
    do {                                                                                           \
        if (!(x))                                                                                  \
            FAIL("expected %s", #x);                                                               \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b)                                                                              \
            FAIL("%s == %s: %lld != %lld", #a, #b, _a, _b);                                        \
    } while (0)

#define ASSERT_LE(a, b)                                                                            \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (!(_a <= _b))                                                                           \
            FAIL("%s <= %s: %lld > %lld", #a, #b, _a, _b);                                         \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (!_a || !_b || strcmp(_a, _b) != 0)                                                     \
            FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");    \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *_h = (hay), *_n = (needle);                                                    \
        if (!_h || !strstr(_h, _n))                                                                \
            FAIL("%s should contain \"%s\": got \"%s\"", #hay, _n, _h ? _h : "(null)");            \
    } while (0)

/* expr returns >= 0 on success and fills err on failure. */
#define ASSERT_OK(expr, err)                                                                       \
    do {                                                                                           \
        long long _r = (long long)(expr);                                                          \
        if (_r < 0)                                                                                \
            FAIL("%s failed (%lld): %s", #expr, _r, cdn_err_msg(err));                             \
    } while (0)

/* expr must fail; its message must contain needle. */
#define ASSERT_FAILS(expr, err, needle)                                                            \
    do {                                                                                           \
        long long _r = (long long)(expr);                                                          \
        if (_r >= 0)                                                                               \
            FAIL("%s should have failed (got %lld)", #expr, _r);                                   \
        ASSERT_CONTAINS(cdn_err_msg(err), needle);                                                 \
    } while (0)
