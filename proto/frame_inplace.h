/* SPDX-License-Identifier: Apache-2.0 */
/* In-place decoding of data frames (internal to the frame codec). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Decodes payload as an Envelope carrying Output, StdinData, FileData or ArchiveData, with the
 * data bytes left in place (pointing into payload) instead of copied. Returns false, having
 * decided nothing, for anything else: other bodies, unknown or repeated fields, any malformation;
 * the caller then uses protobuf-c, whose result this must always equal. Structs come from alloc. */
bool cdn_frame_decode_in_place(const uint8_t *payload, size_t len,
                               void *(*alloc)(void *ud, size_t size), void *ud, cdn_envelope **out);
