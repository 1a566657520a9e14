/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_err: error values with a message that names what failed. */
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cdn_err {
    int code;
    char *msg;
};

/* Used when allocating the error itself fails: the caller still gets a code and a message. */
static struct cdn_err oom_err = {ENOMEM, (char *)"out of memory while reporting an error"};

int cdn_err_setv(cdn_err **err, int code, const char *fmt, va_list ap) {
    if (code <= 0)
        code = EIO;
    if (!err)
        return -code;
    cdn_err_free(*err);
    *err = NULL;
    struct cdn_err *e = calloc(1, sizeof(*e));
    if (!e || vasprintf(&e->msg, fmt, ap) < 0) {
        free(e);
        *err = &oom_err;
        return -code;
    }
    e->code = code;
    *err = e;
    return -code;
}

int cdn_err_set(cdn_err **err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = cdn_err_setv(err, code, fmt, ap);
    va_end(ap);
    return r;
}

int cdn_err_prefix(cdn_err **err, const char *fmt, ...) {
    if (!err)
        return -EIO;
    if (!*err)
        return cdn_err_set(err, EIO, "unknown error");
    if (*err == &oom_err)
        return -ENOMEM;
    char *prefix = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&prefix, fmt, ap);
    va_end(ap);
    char *joined = NULL;
    if (n >= 0 && asprintf(&joined, "%s: %s", prefix, (*err)->msg) >= 0) {
        free((*err)->msg);
        (*err)->msg = joined;
    }
    if (n >= 0)
        free(prefix);
    return -(*err)->code;
}

const char *cdn_err_msg(const cdn_err *err) { return err ? err->msg : "no error"; }

int cdn_err_code(const cdn_err *err) { return err ? err->code : 0; }

void cdn_err_free(cdn_err *err) {
    if (!err || err == &oom_err)
        return;
    free(err->msg);
    free(err);
}

void cdn_err_freep(cdn_err **err) {
    cdn_err_free(*err);
    *err = NULL;
}

int cdn_err_recode(cdn_err **err, int code) {
    if (err && *err && *err != &oom_err)
        (*err)->code = code;
    return -code;
}
