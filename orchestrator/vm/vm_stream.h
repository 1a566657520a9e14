/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's channel carried over the libvirt connection (internal to cdn_vm): for hosts
 * reached over the network (qemu+ssh, qemu+tls, qemu+tcp), where the channel's unix socket is on
 * the other machine. libvirt's daemon connects to the socket there (virDomainOpenChannel) and the
 * bytes travel in a virStream; two threads copy them to and from one end of a socketpair, whose
 * other end is the fd the channel gets. */
#pragma once

#include <libvirt/libvirt.h>

#include "err.h"

struct vm_stream;
/* Opens the named channel of dom; *fd is the caller's end (the caller closes it). */
int vm_stream_open(virConnectPtr conn, virDomainPtr dom, const char *channel,
                   struct vm_stream **out, int *fd, cdn_err **err);
/* Ends the copying (the domain destroyed or not) and frees. NULL is fine. */
void vm_stream_close(struct vm_stream *s);
/* For a host that stopped answering: our end of the pair shut, the threads detached (the
 * receiving one may wait on the host forever), nothing freed (vm_keep_forever). NULL is fine. */
void vm_stream_abandon(struct vm_stream *s);
