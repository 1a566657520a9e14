/* SPDX-License-Identifier: Apache-2.0 */
/* cordon preview ID PORT [--host-port N | --unix] | preview --close ID PORT: a guest port the
 * sandbox's policy lists (previews.ports), exposed on 127.0.0.1 of cordond's host (or a unix
 * socket in its state folder) and relayed over the agent channel. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"

static int port_arg(const char *what, const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v == 0 || v > 65535) {
        fprintf(stderr, "cordon preview: %s must be a port (1-65535), not '%s'\n", what, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int cli_preview(int argc, char **argv) {
    static const struct option longopts[] = {{"close", no_argument, NULL, 'c'},
                                             {"host-port", required_argument, NULL, 'p'},
                                             {"unix", no_argument, NULL, 'u'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    static const char usage[] =
        "usage: cordon preview [--host-port N | --unix] [OPTIONS] ID PORT\n"
        "       cordon preview --close [OPTIONS] ID PORT\n\n"
        "Exposes guest port PORT (one its policy's previews.ports lists) on 127.0.0.1 of\n"
        "cordond's host (a free port, or --host-port N; --unix: a socket in its state folder)\n"
        "and prints the address; every connection is on the sandbox's audit trail. --close ends\n"
        "it and its connections; a pause or a stop ends them all.\n\noptions:\n";
    struct cli_remote r;
    cli_remote_init(&r);
    bool close_it = false, unix_socket = false;
    uint32_t host_port = 0;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 'c')
            close_it = true;
        else if (c == 'u')
            unix_socket = true;
        else if (c == 'p') {
            if (port_arg("--host-port", optarg, &host_port) < 0)
                return CLI_EXIT_FAILURE;
        } else if (!cli_remote_option(&r, c, optarg)) {
            fprintf(c == 'h' ? stdout : stderr, "%s%s", usage, CLI_REMOTE_USAGE);
            if (c == 'h')
                exit(0);
            return CLI_EXIT_FAILURE;
        }
    }
    uint32_t port;
    if (argc - optind != 2 || (close_it && (unix_socket || host_port)) ||
        (unix_socket && host_port)) {
        fprintf(stderr, "%s", usage);
        return CLI_EXIT_FAILURE;
    }
    if (port_arg("PORT", argv[optind + 1], &port) < 0)
        return CLI_EXIT_FAILURE;
    ProtobufCMessage *m = NULL;
    int code;
    if (close_it) {
        Cordon__V1__ClosePreviewRequest q = CORDON__V1__CLOSE_PREVIEW_REQUEST__INIT;
        q.sandbox_id = argv[optind];
        q.port = port;
        code = cli_remote_unary("preview", &r, "ClosePreview", &q.base,
                                &cordon__v1__preview__descriptor, &m);
    } else {
        Cordon__V1__OpenPreviewRequest q = CORDON__V1__OPEN_PREVIEW_REQUEST__INIT;
        q.sandbox_id = argv[optind];
        q.port = port;
        q.host_port = host_port;
        q.unix_socket = unix_socket;
        code = cli_remote_unary("preview", &r, "OpenPreview", &q.base,
                                &cordon__v1__preview__descriptor, &m);
    }
    if (code)
        return code;
    const Cordon__V1__Preview *p = (const Cordon__V1__Preview *)m;
    if (r.json)
        cli_json_print(json_pack("{s:s, s:i, s:s, s:b}", "sandbox", p->sandbox_id, "port",
                                 (int)p->port, "address", p->address, "open", !close_it));
    else if (close_it)
        printf("closed %s (guest port %u)\n", p->address, p->port);
    else
        printf("%s\n", p->address);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
