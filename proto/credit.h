/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_credit: the receiving side of per-stream flow control, shared by host and agent. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A value type embedded in each stream. The sender may send `left` more data bytes; the receiver
 * returns credit for what it has consumed, in batches. */
struct cdn_credit {
    uint64_t left;     /* bytes the peer may still send us */
    uint64_t consumed; /* consumed since our last Credit message */
};

static inline struct cdn_credit cdn_credit_init(uint32_t window) {
    return (struct cdn_credit){.left = window};
}

/* n bytes of data arrived: false if they exceed the credit (a violation; nothing is taken). */
static inline bool cdn_credit_take(struct cdn_credit *c, size_t n) {
    if (n > c->left)
        return false;
    c->left -= n;
    return true;
}

/* n received bytes were consumed. Returns how many bytes to grant back now (0: not yet): a
 * quarter window at a time keeps Credit frames few without stalling the sender. */
static inline uint64_t cdn_credit_consume(struct cdn_credit *c, size_t n, uint32_t window) {
    c->consumed += n;
    if (c->consumed < window / 4)
        return 0;
    uint64_t grant = c->consumed;
    c->left += grant;
    c->consumed = 0;
    return grant;
}
