/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_vm domain XML: a transient q35 guest with direct kernel boot, no NIC, a file console and
 * the agent's virtio-serial port. Pure: no libvirt calls, so tests can read what is generated. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "vm.h"

/* Escapes the five XML specials; refuses control characters, which have no place in a path. */
static char *xml_escape(const char *s) {
    size_t len = 0;
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        len += strchr("<>&'\"", *p) ? 6 : 1;
    }
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '<': o = stpcpy(o, "&lt;"); break;
        case '>': o = stpcpy(o, "&gt;"); break;
        case '&': o = stpcpy(o, "&amp;"); break;
        case '\'': o = stpcpy(o, "&apos;"); break;
        case '"': o = stpcpy(o, "&quot;"); break;
        default: *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static bool id_ok(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    return true;
}

int cdn_vm_domain_xml(const struct cdn_vm_spec *spec, char **xml, cdn_err **err) {
    if (!spec->id || !id_ok(spec->id))
        return cdn_err_set(err, EINVAL, "vm id '%s' must be 1-64 of [A-Za-z0-9_-]",
                           spec->id ? spec->id : "");
    if (!spec->dir || !spec->kernel || !spec->initrd)
        return cdn_err_set(err, EINVAL, "vm %s: dir, kernel and initrd are required", spec->id);
    _cleanup_free_ char *dir = xml_escape(spec->dir);
    _cleanup_free_ char *kernel = xml_escape(spec->kernel);
    _cleanup_free_ char *initrd = xml_escape(spec->initrd);
    _cleanup_free_ char *extra = xml_escape(spec->cmdline_extra ? spec->cmdline_extra : "");
    _cleanup_free_ char *disk = spec->disk ? xml_escape(spec->disk) : strdup("");
    _cleanup_free_ char *base = spec->disk_base ? xml_escape(spec->disk_base) : strdup("");
    _cleanup_free_ char *uuid_xml = NULL;
    if (spec->uuid) {
        size_t n = strlen(spec->uuid);
        if (n != 36 || strspn(spec->uuid, "0123456789abcdefABCDEF-") != n)
            return cdn_err_set(err, EINVAL, "vm %s: '%s' is not a UUID", spec->id, spec->uuid);
        if (asprintf(&uuid_xml, "  <uuid>%s</uuid>\n", spec->uuid) < 0)
            return cdn_err_set(err, ENOMEM, "out of memory");
    }
    if (!dir || !kernel || !initrd || !extra || !disk || !base)
        return cdn_err_set(err, EINVAL,
                           "vm %s: a path or the command line holds a control "
                           "character",
                           spec->id);
    /* Like the serial controller, the disk sits on pcie.0 itself (no IRQ behind a root port).
     * The shared base is named with relabel='no': it is world-readable, and libvirt must not
     * chown a file that concurrent tasks share (nor leave it owned by its QEMU user). */
    if (spec->disk && !spec->disk_base)
        return cdn_err_set(err, EINVAL, "vm %s: an overlay disk needs its base", spec->id);
    _cleanup_free_ char *disk_xml = NULL;
    if (spec->disk &&
        asprintf(
            &disk_xml,
            "    <disk type='file' device='disk'>\n"
            "      <driver name='qemu' type='qcow2' cache='unsafe'/>\n"
            "      <source file='%s'/>\n"
            "      <backingStore type='file'>\n"
            "        <format type='qcow2'/>\n"
            "        <source file='%s'><seclabel model='dac' relabel='no'/></source>\n"
            "        <backingStore/>\n"
            "      </backingStore>\n"
            "      <target dev='vda' bus='virtio'/>\n"
            "      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>\n"
            "    </disk>\n",
            disk, base) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    /* The agent's channel: a vsock device (libvirt picks a free CID), else a virtio-serial port
     * on a unix socket QEMU listens on in the task folder. */
    bool vsock = spec->transport == CDN_VM_VSOCK;
    _cleanup_free_ char *agent_xml = NULL;
    if (vsock ? asprintf(&agent_xml,
                         "    <vsock model='virtio'>\n"
                         "      <cid auto='yes'/>\n"
                         "      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' "
                         "function='0x0'/>\n"
                         "    </vsock>\n") < 0
              : asprintf(&agent_xml,
                         "    <channel type='unix'>\n"
                         "      <source mode='bind' path='%s/agent.sock'/>\n"
                         "      <target type='virtio' name='org.cordon.agent.0'/>\n"
                         "    </channel>\n",
                         dir) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    unsigned memory = spec->memory_mib ? spec->memory_mib : 512;
    unsigned vcpus = spec->vcpus ? spec->vcpus : 1;
    /* The virtio-serial controller sits on pcie.0 itself: behind libvirt's default PCIe root
     * port the guest found no IRQ for it under TCG, and the port never carried a byte. */
    int n = asprintf(
        xml,
        "<domain type='%s'>\n"
        "  <name>cordon-%s</name>\n"
        "%s"
        "  <memory unit='MiB'>%u</memory>\n"
        "  <vcpu>%u</vcpu>\n"
        "  <os>\n"
        "    <type arch='x86_64' machine='q35'>hvm</type>\n"
        "    <kernel>%s</kernel>\n"
        "    <initrd>%s</initrd>\n"
        "    <cmdline>console=ttyS0 panic=-1 quiet%s %s</cmdline>\n"
        "  </os>\n"
        "  %s\n"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <on_reboot>destroy</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n"
        "%s"
        "    <serial type='file'><source path='%s/console.log'/><target port='0'/></serial>\n"
        "    <controller type='virtio-serial' index='0'>\n"
        "      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>\n"
        "    </controller>\n"
        "%s"
        "    <controller type='usb' model='none'/>\n"
        "    <memballoon model='none'/>\n"
        "  </devices>\n"
        "</domain>\n",
        spec->kvm ? "kvm" : "qemu", spec->id, uuid_xml ? uuid_xml : "", memory, vcpus, kernel,
        initrd, vsock ? " cordon.transport=vsock" : "", extra,
        spec->kvm ? "<cpu mode='host-passthrough'/>"
                  : "<cpu mode='custom'><model>qemu64</model></cpu>",
        disk_xml ? disk_xml : "", dir, agent_xml);
    if (n < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    return 0;
}
