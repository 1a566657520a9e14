/* SPDX-License-Identifier: Apache-2.0 */
/* The ustar header layout and its field helpers, shared by the archive reader and writer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAR_BLOCK 512u

struct tar_header {
    char name[100];
    char mode[8];
    char uid[8];
    char gid[8];
    char size[12];
    char mtime[12];
    char chksum[8];
    char typeflag;
    char linkname[100];
    char magic[6];
    char version[2];
    char uname[32];
    char gname[32];
    char devmajor[8];
    char devminor[8];
    char prefix[155];
    char pad[12];
};

_Static_assert(sizeof(struct tar_header) == TAR_BLOCK, "tar header is one block");

/* Parses an octal field (NUL/space terminated). Sets *ok false on a non-octal digit or overflow. */
uint64_t tar_octal(const char *f, size_t n, bool *ok);
/* Writes v as zero-padded octal filling n-1 digits and a NUL; false if it does not fit. */
bool tar_put_octal(char *f, size_t n, uint64_t v);
bool tar_header_checksum_ok(const struct tar_header *h);
void tar_header_set_checksum(struct tar_header *h);
/* prefix + "/" + name (ustar), or name alone; malloc'd. */
char *tar_header_path(const struct tar_header *h);
char *tar_header_link(const struct tar_header *h);
