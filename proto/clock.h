/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_now_ms: the one monotonic clock every deadline in cordon is measured on. */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t cdn_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
