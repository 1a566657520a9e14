/* SPDX-License-Identifier: Apache-2.0 */
/* Where images and task state live unless a subcommand is told otherwise. */
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

const char *cli_default_images(void) {
    const char *env = getenv("CORDON_IMAGES");
    if (env && *env)
        return env;
    return access("/usr/share/cordon/images/kernel/vmlinux", R_OK) == 0 ? "/usr/share/cordon/images"
                                                                        : "build/images";
}

const char *cli_default_state(void) {
    const char *env = getenv("CORDON_STATE");
    return env && *env ? env : "/var/lib/cordon";
}
