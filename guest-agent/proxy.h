/* SPDX-License-Identifier: Apache-2.0 */
/* agent_proxy: the HTTP proxy through which the guest's programs reach the network (CONNECT and
 * http:// requests), each connection an Egress stream decided by the host. */
#pragma once

#include "conn.h"
#include "err.h"
#include "loop.h"

struct agent_proxy;

/* Listens on listen ("127.0.0.1:3128"), bringing the loopback interface up first. */
int agent_proxy_new(struct agent_loop *loop, const char *listen, struct agent_proxy **out,
                    cdn_err **err);
/* The connection new requests go to (NULL while the host is away: they get a 503). */
void agent_proxy_set_conn(struct agent_proxy *p, struct agent_conn *c);
/* A preview: the host opened stream id with PortForward; 127.0.0.1:port in the guest is connected
 * and relayed on it (PortForwardReady), or the stream is refused with an Error. */
void agent_proxy_forward(struct agent_proxy *p, struct agent_conn *c, uint64_t id,
                         const CordonAgent__PortForward *pf);
/* Closes the listener and the clients still sending their request; those with a stream belong to
 * the connection. */
void agent_proxy_free(struct agent_proxy *p);
