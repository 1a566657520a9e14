/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_egress share (internal). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress.h"

bool eg_normalize(const char *host, char *out, size_t size);
/* The rule's host is an address or a CIDR (it names addresses explicitly). */
bool eg_rule_names_address(const char *rule_host);
bool eg_rule_covers_address(const char *rule_host, int family, const uint8_t *addr);
