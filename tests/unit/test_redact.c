/* SPDX-License-Identifier: Apache-2.0 */
/* The redactor: a secret whole, split across chunks at every point, base64-encoded inside longer
 * text at each alignment (both alphabets), URL-encoded and JSON-escaped never gets through. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"
#include "test.h"

static const char secret[] = "s3cr3t/Tok+en=\"v4lue\"";

static struct cdn_redactor *make(void) {
    struct cdn_redactor *r = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_redactor_new(&r, &err), err);
    ASSERT_OK(cdn_redactor_add(r, "api-token", (const uint8_t *)secret, strlen(secret), &err), err);
    return r;
}

static int append(void *ud, const uint8_t *p, size_t n) {
    struct cdn_buf *b = ud;
    return cdn_buf_append(b, p, n);
}

TEST(a_secret_in_any_form_is_redacted) {
    struct cdn_redactor *r = make();
    char text[512], b64[256];
    size_t n;
    /* whole */
    snprintf(text, sizeof(text), "before %s after", secret);
    char *out = cdn_redact(r, text, strlen(text), &n);
    ASSERT_STREQ(out, "before [REDACTED:api-token] after");
    free(out);
    /* base64 at each alignment, inside a longer encoded run, both alphabets */
    for (int shift = 0; shift < 3; shift++) {
        char plain[128];
        snprintf(plain, sizeof(plain), "%.*suser:%s:tail", shift, "xyz", secret);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)plain, (int)strlen(plain));
        for (int url = 0; url < 2; url++) {
            if (url)
                for (char *p = b64; *p; p++)
                    *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
            out = cdn_redact(r, b64, strlen(b64), &n);
            ASSERT_CONTAINS(out, "[REDACTED:api-token]");
            free(out);
        }
    }
    /* URL-encoded (upper and lower hex) and JSON-escaped */
    const char *forms[] = {"q=s3cr3t%2FTok%2Ben%3D%22v4lue%22&x",
                           "q=s3cr3t%2fTok%2ben%3d%22v4lue%22",
                           "{\"k\":\"s3cr3t/Tok+en=\\\"v4lue\\\"\"}"};
    for (size_t i = 0; i < 3; i++) {
        out = cdn_redact(r, forms[i], strlen(forms[i]), &n);
        ASSERT_CONTAINS(out, "[REDACTED:api-token]");
        ASSERT_TRUE(strstr(out, "v4lue") == NULL);
        free(out);
    }
    cdn_redactor_free(r);
}

TEST(a_secret_split_across_chunks_is_redacted) {
    struct cdn_redactor *r = make();
    char text[256];
    snprintf(text, sizeof(text), "line one\nthe token is %s, twice: %s\nend\n", secret, secret);
    size_t len = strlen(text);
    for (size_t cut = 1; cut < len; cut++) {
        struct cdn_redact_stream st = {0};
        struct cdn_buf out = {0};
        ASSERT_EQ(cdn_redact_feed(r, &st, (const uint8_t *)text, cut, false, append, &out), 0);
        ASSERT_EQ(
            cdn_redact_feed(r, &st, (const uint8_t *)text + cut, len - cut, false, append, &out),
            0);
        ASSERT_EQ(cdn_redact_feed(r, &st, NULL, 0, true, append, &out), 0);
        cdn_buf_append(&out, "", 1);
        const char *s = (const char *)cdn_buf_head(&out);
        ASSERT_TRUE(strstr(s, "v4lue") == NULL);
        ASSERT_CONTAINS(s, "is [REDACTED:api-token], twice: [REDACTED:api-token]\nend\n");
        cdn_buf_free(&out);
        cdn_redact_stream_clear(&st);
    }
    /* byte by byte */
    struct cdn_redact_stream st = {0};
    struct cdn_buf out = {0};
    for (size_t i = 0; i < len; i++)
        cdn_redact_feed(r, &st, (const uint8_t *)text + i, 1, false, append, &out);
    cdn_redact_feed(r, &st, NULL, 0, true, append, &out);
    ASSERT_EQ(cdn_buf_len(&out), len - 2 * strlen(secret) + 2 * strlen("[REDACTED:api-token]"));
    cdn_buf_free(&out);
    cdn_redact_stream_clear(&st);
    cdn_redactor_free(r);
}

TEST(short_or_oddly_named_secrets_are_refused) {
    struct cdn_redactor *r = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_redactor_new(&r, &err), err);
    ASSERT_EQ(cdn_redactor_add(r, "t", (const uint8_t *)"abc", 3, &err), -EINVAL);
    ASSERT_CONTAINS(cdn_err_msg(err), "must be 8 to 65536 bytes");
    cdn_err_free(err);
    err = NULL;
    ASSERT_EQ(cdn_redactor_add(r, "a b", (const uint8_t *)"abcdefghij", 10, &err), -EINVAL);
    cdn_err_free(err);
    cdn_redactor_free(r);
}
