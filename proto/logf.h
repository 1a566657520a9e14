/* SPDX-License-Identifier: Apache-2.0 */
/* One formatted line to a log callback: how cordond's parts (api, scheduler) report. */
#pragma once

#include <stdarg.h>
#include <stdio.h>

typedef void (*cdn_log_fn)(void *ud, const char *line);

static inline __attribute__((format(printf, 3, 4))) void cdn_logf(cdn_log_fn log, void *ud,
                                                                  const char *fmt, ...) {
    if (!log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log(ud, line);
}
