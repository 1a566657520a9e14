/* SPDX-License-Identifier: Apache-2.0 */
/* One held host per test process (tests run one per forked child). */
#include "vmhost.h"

#include <stdlib.h>

#include "channel.h"
#include "test.h"

static struct cdn_vm_host *held;

void th_host_release(void) {
    cdn_vm_host_close(held);
    held = NULL;
}

struct cdn_vm_host *th_host_hold(const char *daemon_dir) {
    struct cdn_vm_host_opts o = {.daemon_dir = daemon_dir};
    cdn_err *err = NULL;
    ASSERT_OK(cdn_vm_host_open(&o, &held, &err), err);
    atexit(th_host_release);
    return held;
}

void th_assert_no_cordon_domains(struct cdn_vm_host *h) {
    char **names = NULL;
    size_t n = 0;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_vm_host_list(h, &names, &n, &err), err);
    for (size_t i = 0; i < n; i++)
        FAIL("leftover domain %s", names[i]);
    free(names);
}

struct cdn_channel *th_vm_agent(struct cdn_vm *vm) {
    cdn_err *err = NULL;
    int fd = cdn_vm_agent_fd(vm, 60000, &err);
    ASSERT_OK(fd, err);
    struct cdn_channel_opts o = {.name = cdn_vm_name(vm), .handshake_timeout_ms = 60000};
    struct cdn_channel *ch = NULL;
    ASSERT_OK(cdn_channel_open(fd, &o, &ch, &err), err);
    return ch;
}
