/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_vm share: the host's and the VM's insides, libvirt's error converted. */
#pragma once

#include <libvirt/libvirt.h>

#include "cleanup.h"
#include "vm.h"
#include "vm_daemon.h"

struct cdn_vm_host {
    virConnectPtr conn;
    char *uri;
    bool remote; /* over the network: the agent's channel travels in the libvirt connection */
    struct vm_daemons daemons;
};

struct cdn_vm {
    struct cdn_vm_host *host;
    virDomainPtr dom;
    char *name;
    char *sock;
    char *console;
    enum cdn_vm_transport transport;
    unsigned cid;             /* vsock: the guest's context id, as libvirt assigned it */
    unsigned domid;           /* libvirt's id of this run of the domain: a later clone of the
                               * same template has the name but not the id */
    struct vm_stream *stream; /* a remote host's: the channel over libvirt */
};

DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree)

/* The domain named like vm, if it is vm's run of it (not a later one under the same name). */
virDomainPtr vm_lookup(const struct cdn_vm *vm);

/* Sets *err to what (printf) and libvirt's last error; returns -EIO. */
__attribute__((format(printf, 2, 3))) int vm_lv_err(cdn_err **err, const char *fmt, ...);

/* What a host that stopped answering holds (its connection, a channel stream and its threads'
 * state), left as it is (freeing it is a call that could wait forever) and kept reachable for
 * the life of the process. */
void vm_keep_forever(void *p);

/* A VM about to start on h: the spec's paths made absolute (libvirt resolves them in its own
 * daemon), its domain XML (uuid: the saved guest's, when restoring one, else NULL), and the
 * cdn_vm that will hold the domain (a stale agent socket removed). */
int vm_prepare(struct cdn_vm_host *h, const struct cdn_vm_spec *spec, const char *uuid,
               struct cdn_vm **vm, char **xml, cdn_err **err);
