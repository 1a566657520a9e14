/* SPDX-License-Identifier: Apache-2.0 */
/* cordon mcp's message decoder (pure: no I/O). */
#pragma once

#include <jansson.h>
#include <stddef.h>

enum mcp_kind {
    MCP_PARSE_ERROR,  /* not JSON (why) */
    MCP_INVALID,      /* JSON, not a JSON-RPC 2.0 message (why); id set when it had a valid one */
    MCP_REQUEST,      /* method and id (a string or an integer); params an object or NULL */
    MCP_NOTIFICATION, /* method, no id */
    MCP_RESPONSE,     /* no method: a response (nothing here waits for one) */
};

struct mcp_msg {
    enum mcp_kind kind;
    json_t *root; /* the parsed message (the caller decrefs it; NULL for a parse error) */
    json_t *id, *params;
    const char *method;
    char why[256];
};

enum mcp_kind mcp_decode(const char *line, size_t len, struct mcp_msg *out);
