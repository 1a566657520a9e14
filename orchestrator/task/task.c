/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task: what the session's files share: its notices, its cancellation, its result. */
#include "task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "clock.h"
#include "task_internal.h"

void task_notice(const struct cdn_task_spec *spec, const char *fmt, ...) {
    if (!spec->on_notice)
        return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    spec->on_notice(spec->ud, line);
}

bool task_cancelled(const struct cdn_task_spec *spec) { return spec->cancel && *spec->cancel; }

void cdn_task_result_free(struct cdn_task_result *res) {
    free(res->console);
    free(res->evidence);
    res->console = res->evidence = NULL;
}
