/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the dependency readers (the manifests and lockfiles come from the guest).
 * The first byte picks the format; the rest is split in two at its second byte: the old and the
 * new text. They must never fail but for memory, and always return an array of changes. */
#include <jansson.h>
#include <stdlib.h>

#include "workspace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[] = {"package.json", "package-lock.json", "requirements.txt",
                                        "Cargo.lock", "go.sum"};
    if (size < 2)
        return 0;
    const char *name = names[data[0] % 5];
    size_t cut = data[1] < size - 2 ? data[1] : size - 2;
    const char *text = (const char *)data + 2;
    json_t *ch = cdn_deps_changes(name, text, cut, text + cut, size - 2 - cut);
    if (!json_is_array(ch))
        abort();
    json_decref(ch);
    return 0;
}
