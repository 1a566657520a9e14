/* SPDX-License-Identifier: Apache-2.0 */
/* agent_transport: opens the agent's end of the channel (vsock, virtio-serial, or an fd). */
#pragma once

#include <stdint.h>

#include "err.h"

/* A virtio-serial port: a device path, or a port name looked up under /sys/class/virtio-ports
 * (there is no udev in a small guest to make the /dev/virtio-ports/NAME link). Returns a
 * non-blocking fd. */
int agent_transport_open_serial(const char *path_or_name, cdn_err **err);
/* A listening AF_VSOCK socket on port (any CID), non-blocking. */
int agent_transport_listen_vsock(uint32_t port, cdn_err **err);
/* Accepts one host connection from a listening socket; -EAGAIN if none is waiting. */
int agent_transport_accept(int listen_fd, cdn_err **err);
/* Makes an inherited fd (tests) non-blocking and close-on-exec. */
int agent_transport_adopt_fd(int fd, cdn_err **err);
