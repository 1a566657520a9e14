/* SPDX-License-Identifier: Apache-2.0 */
/* A small HTTP/1.1 server on a loopback address, for egress tests and benchmarks: one thread,
 * one request per connection. GET /bytes/N answers N bytes (a repeating pattern, streamed);
 * anything else answers "hello from ADDRESS\n". It counts the requests it served. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct th_httpd;

/* Listens on addr (e.g. "127.0.0.2") at a free port (asserting success). */
struct th_httpd *th_httpd_start(const char *addr);
uint16_t th_httpd_port(const struct th_httpd *h);
unsigned th_httpd_requests(const struct th_httpd *h);
/* The last request's head as received (request line and headers). */
const char *th_httpd_last_head(struct th_httpd *h);
/* Serves body (copied) with content type for GET path (exact, query ignored); up to 16 routes. */
void th_httpd_route(struct th_httpd *h, const char *path, const char *type, const void *body,
                    size_t len);
void th_httpd_stop(struct th_httpd *h);
