/* SPDX-License-Identifier: Apache-2.0 */
/* One line of cordon mcp's input as JSON-RPC 2.0: what it is, or why it is none (fuzzed:
 * tests/fuzz/fuzz_mcp.c). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mcp_rpc.h"

enum mcp_kind mcp_decode(const char *line, size_t len, struct mcp_msg *out) {
    *out = (struct mcp_msg){0};
    json_error_t je;
    out->root = json_loadb(line, len, 0, &je);
    if (!out->root) {
        snprintf(out->why, sizeof(out->why), "parse error at column %d: %s", je.column, je.text);
        return out->kind = MCP_PARSE_ERROR;
    }
    json_t *m = out->root;
    json_t *id = json_object_get(m, "id");
    const char *jsonrpc = json_string_value(json_object_get(m, "jsonrpc"));
    bool valid_id = !id || json_is_string(id) || json_is_integer(id);
    out->method = json_string_value(json_object_get(m, "method"));
    out->params = json_object_get(m, "params");
    out->id = valid_id ? id : NULL;
    if (!json_is_object(m) || !jsonrpc || strcmp(jsonrpc, "2.0") != 0 || !valid_id ||
        (out->params && !json_is_object(out->params))) {
        snprintf(out->why, sizeof(out->why),
                 "invalid request: a JSON-RPC 2.0 object with a method, an id that is a string "
                 "or a number, and params that are an object");
        out->method = NULL;
        out->params = NULL;
        return out->kind = MCP_INVALID;
    }
    if (!out->method) /* a response: this server sends no requests */
        return out->kind = MCP_RESPONSE;
    return out->kind = id ? MCP_REQUEST : MCP_NOTIFICATION;
}
