/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_vm saved guests: a running guest saved to a file (libvirt's virDomainSaveFlags), brought
 * back as clones: its name, in a folder and on a disk of their own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "vm_internal.h"

int cdn_vm_save(struct cdn_vm *vm, const char *path, cdn_err **err) {
    if (virDomainSaveFlags(vm->dom, path, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0)
        return vm_lv_err(err, "vm %s: saving to %s", vm->name, path);
    if (vm->sock)
        unlink(vm->sock); /* the restored QEMU makes its own */
    return 0;
}

int cdn_vm_suspend(struct cdn_vm *vm, cdn_err **err) {
    if (virDomainSuspend(vm->dom) < 0)
        return vm_lv_err(err, "vm %s: suspending", vm->name);
    return 0;
}

int cdn_vm_resume(struct cdn_vm *vm, cdn_err **err) {
    if (virDomainResume(vm->dom) < 0)
        return vm_lv_err(err, "vm %s: resuming", vm->name);
    return 0;
}

/* The domain of vm's name, once a restore has started it (a new run: a new id). */
static int adopt(struct cdn_vm *vm, const char *path, cdn_err **err) {
    virDomainPtr d = virDomainLookupByName(vm->host->conn, vm->name);
    if (!d)
        return vm_lv_err(err, "vm %s: looking it up after restoring %s", vm->name, path);
    if (vm->dom)
        virDomainFree(vm->dom);
    vm->dom = d;
    vm->domid = virDomainGetID(d);
    return 0;
}

/* The text between <tag> and </tag> in xml, into out (size n). */
static bool xml_text(const char *xml, const char *tag, char *out, size_t n) {
    char open[32], close[32];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(xml, open);
    const char *b = a ? strstr(a, close) : NULL;
    if (!b || (size_t)(b - a - strlen(open)) >= n)
        return false;
    size_t len = (size_t)(b - a) - strlen(open);
    memcpy(out, a + strlen(open), len);
    out[len] = '\0';
    return true;
}

/* The id (cordon-<id>) and UUID of the guest saved in path: libvirt restores a guest under both
 * only. */
static int saved_identity(struct cdn_vm_host *h, const char *path, char id[80], char uuid[40],
                          cdn_err **err) {
    _cleanup_free_ char *xml = virDomainSaveImageGetXMLDesc(h->conn, path, 0);
    if (!xml)
        return vm_lv_err(err, "reading the saved guest %s", path);
    char name[80];
    if (!xml_text(xml, "name", name, sizeof(name)) || strncmp(name, "cordon-", 7) != 0)
        return cdn_err_set(err, EIO, "the saved guest %s is no cordon guest", path);
    memcpy(id, name + 7, strlen(name + 7) + 1);
    if (!xml_text(xml, "uuid", uuid, 40) || strlen(uuid) != 36)
        return cdn_err_set(err, EIO, "the saved guest %s names no UUID", path);
    return 0;
}

int cdn_vm_clone(struct cdn_vm_host *h, const char *saved, const struct cdn_vm_spec *spec,
                 struct cdn_vm **out, cdn_err **err) {
    if (spec->transport != CDN_VM_SERIAL)
        return cdn_err_set(err, ENOTSUP, "vm cordon-%s: only a virtio-serial guest can be cloned",
                           spec->id ? spec->id : "");
    char id[80], uuid[40];
    _cleanup_(cdn_vm_destroyp) struct cdn_vm *vm = NULL;
    _cleanup_free_ char *xml = NULL;
    int r = saved_identity(h, saved, id, uuid, err);
    struct cdn_vm_spec named = *spec;
    named.id = id;
    if (r == 0)
        r = vm_prepare(h, &named, uuid, &vm, &xml, err);
    if (r < 0)
        return r;
    if (virDomainRestoreFlags(h->conn, saved, xml, VIR_DOMAIN_SAVE_RUNNING) < 0)
        return vm_lv_err(err, "vm %s: restoring a clone of %s", vm->name, saved);
    if ((r = adopt(vm, saved, err)) < 0)
        return r;
    *out = TAKE_PTR(vm);
    return 0;
}

int cdn_vm_restore(struct cdn_vm *vm, const char *saved, cdn_err **err) {
    /* The saved definition as it was (same folder, socket, console, disk, vsock CID). */
    if (virDomainRestoreFlags(vm->host->conn, saved, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0)
        return vm_lv_err(err, "vm %s: restoring it from %s", vm->name, saved);
    return adopt(vm, saved, err);
}
