/* SPDX-License-Identifier: Apache-2.0 */
/* Choosing the accelerator: KVM only once a guest has been seen to run under it on this host.
 * Like Kata's `check`, but proven by a boot rather than inferred from /dev/kvm and CPU flags: on
 * nested hosts /dev/kvm opens and QEMU then aborts or pauses the guest. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cleanup.h"
#include "clock.h"
#include "vm.h"

#define PROBE_MARKER "cordon-probe: userspace reached"
#define DEFAULT_PROBE_MS 15000

static bool console_has_marker(const char *path) {
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    char line[512];
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, PROBE_MARKER))
            return true;
    return false;
}

static void rm_probe_dir(const char *dir) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/console.log", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/agent.sock", dir);
    unlink(path);
    rmdir(dir);
}

int cdn_vm_probe_boot(struct cdn_vm_host *h, const char *dir, const char *kernel,
                      const char *initrd, bool kvm, int timeout_ms, char *why, size_t why_size,
                      cdn_err **err) {
    char id[64], vmdir[4200];
    snprintf(id, sizeof(id), "probe-%d", (int)getpid());
    snprintf(vmdir, sizeof(vmdir), "%s/%s", dir, id);
    if (mkdir(dir, 0711) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", dir);
    if (mkdir(vmdir, 0711) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", vmdir);
    chmod(vmdir, 0711); /* QEMU (an unprivileged user) writes the console here */
    struct cdn_vm_spec spec = {.id = id,
                               .dir = vmdir,
                               .kernel = kernel,
                               .initrd = initrd,
                               .cmdline_extra = "cordon.probe=1",
                               .memory_mib = 256,
                               .vcpus = 1,
                               .kvm = kvm};
    struct cdn_vm *vm = NULL;
    cdn_err *start_err = NULL;
    int r = cdn_vm_start(h, &spec, &vm, &start_err);
    if (r < 0) {
        /* libvirt refusing a kvm domain (no KVM driver, no /dev/kvm access) is a verdict. */
        snprintf(why, why_size, "%s", cdn_err_msg(start_err));
        cdn_err_free(start_err);
        rm_probe_dir(vmdir);
        return 0;
    }
    char console[4300];
    snprintf(console, sizeof(console), "%s", cdn_vm_console_path(vm));
    uint64_t deadline = cdn_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : DEFAULT_PROBE_MS);
    int verdict = -1;
    while (verdict < 0) {
        enum cdn_vm_state st = cdn_vm_state(vm);
        if (st == CDN_VM_GONE) { /* it powered off: did it get as far as its init? */
            verdict = console_has_marker(console);
            if (!verdict)
                snprintf(why, why_size, "the probe guest stopped before reaching userspace");
        } else if (st == CDN_VM_PAUSED) {
            verdict = 0;
            snprintf(why, why_size, "QEMU paused the probe guest (KVM could not run it)");
        } else if (cdn_now_ms() >= deadline) {
            verdict = 0;
            snprintf(why, why_size, "the probe guest showed no sign of life within %d ms",
                     timeout_ms > 0 ? timeout_ms : DEFAULT_PROBE_MS);
        } else {
            usleep(20000);
        }
    }
    cdn_vm_destroy(vm);
    rm_probe_dir(vmdir);
    return verdict;
}

static void boot_id(char out[64]) {
    out[0] = '\0';
    _cleanup_fclose_ FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f && fgets(out, 64, f))
        out[strcspn(out, "\n")] = '\0';
}

/* The cached verdict, if it is from this boot of this host. */
static bool cache_read(const char *path, const char *boot, struct cdn_vm_accel *out) {
    json_t *root = json_load_file(path, 0, NULL);
    if (!root)
        return false;
    const char *b = json_string_value(json_object_get(root, "boot_id"));
    json_t *kvm = json_object_get(root, "kvm");
    const char *why = json_string_value(json_object_get(root, "why"));
    bool ok = b && strcmp(b, boot) == 0 && json_is_boolean(kvm);
    if (ok) {
        out->kvm = json_is_true(kvm);
        snprintf(out->why, sizeof(out->why), "%s", why ? why : "");
        out->cached = true;
    }
    json_decref(root);
    return ok;
}

/* Written to a temporary name and renamed: concurrent tasks never read half a verdict. */
static void cache_write(const char *path, const char *boot, const struct cdn_vm_accel *a) {
    json_t *root = json_pack("{s:s, s:b, s:s, s:I}", "boot_id", boot, "kvm", a->kvm, "why", a->why,
                             "probed_at", (json_int_t)time(NULL));
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    if (root && json_dump_file(root, tmp, JSON_INDENT(2)) == 0 && rename(tmp, path) < 0)
        unlink(tmp);
    json_decref(root);
}

int cdn_vm_accel_choose(struct cdn_vm_host *h, const struct cdn_vm_accel_opts *o,
                        struct cdn_vm_accel *out, cdn_err **err) {
    *out = (struct cdn_vm_accel){0};
    /* No usable /dev/kvm: nothing to probe, and nothing worth caching. */
    const char *dev = o->kvm_dev ? o->kvm_dev : "/dev/kvm";
    if (access(dev, R_OK | W_OK) < 0) {
        snprintf(out->why, sizeof(out->why), "%s is %s", dev,
                 errno == ENOENT ? "absent" : "not accessible");
        return 0;
    }
    char boot[64];
    boot_id(boot);
    if (!o->reprobe && cache_read(o->cache, boot, out))
        return 0;
    int r = cdn_vm_probe_boot(h, o->scratch, o->kernel, o->initrd, true, o->timeout_ms, out->why,
                              sizeof(out->why), err);
    if (r < 0)
        return r;
    out->kvm = r == 1;
    if (out->kvm)
        out->why[0] = '\0';
    else {
        char probe[sizeof(out->why) - 64];
        snprintf(probe, sizeof(probe), "%.400s", out->why);
        snprintf(out->why, sizeof(out->why), "%s exists but a probe boot under KVM failed: %s", dev,
                 probe);
    }
    cache_write(o->cache, boot, out);
    return 0;
}
