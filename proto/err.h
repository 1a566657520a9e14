/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_err: the one error type, carried up with context (modelled on crun's libcrun_error_t). */
#pragma once

#include <stdarg.h>

typedef struct cdn_err cdn_err;

/* Replaces *err (if err is not NULL) with a new error; returns -code so callers can write
 * `return cdn_err_set(err, EINVAL, "...")`. code is a positive errno value. */
int cdn_err_set(cdn_err **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cdn_err_setv(cdn_err **err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Prepends "PREFIX: " to the message of *err; returns -code of *err (or -EIO if unset). */
int cdn_err_prefix(cdn_err **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same error under another code (its message kept); returns -code. */
int cdn_err_recode(cdn_err **err, int code);
const char *cdn_err_msg(const cdn_err *err);
int cdn_err_code(const cdn_err *err);
void cdn_err_free(cdn_err *err);
void cdn_err_freep(cdn_err **err);
