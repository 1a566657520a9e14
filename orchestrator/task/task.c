/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task: what the session's files share: its cancellation, its result. */
#include "task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "clock.h"
#include "task_internal.h"

bool task_cancelled(const struct cdn_task_spec *spec) { return spec->cancel && *spec->cancel; }

void cdn_task_result_free(struct cdn_task_result *res) {
    free(res->console);
    free(res->evidence);
    res->console = res->evidence = NULL;
}
