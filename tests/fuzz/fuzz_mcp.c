/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: cordon mcp's decoder of its input lines (anything a client sends). It must
 * classify every input, and what it calls a request or a notification must be one. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp_rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mcp_msg m;
    enum mcp_kind k = mcp_decode((const char *)data, size, &m);
    switch (k) {
    case MCP_PARSE_ERROR:
        if (m.root || !m.why[0])
            abort();
        break;
    case MCP_INVALID:
        if (!m.why[0] || m.method || m.params)
            abort();
        break;
    case MCP_REQUEST:
        if (!m.method || !(json_is_string(m.id) || json_is_integer(m.id)) ||
            (m.params && !json_is_object(m.params)))
            abort();
        break;
    case MCP_NOTIFICATION:
        if (!m.method || m.id)
            abort();
        break;
    case MCP_RESPONSE:
        if (m.method)
            abort();
        break;
    default: abort();
    }
    json_decref(m.root);
    return 0;
}
