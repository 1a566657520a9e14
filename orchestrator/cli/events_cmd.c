/* SPDX-License-Identifier: Apache-2.0 */
/* cordon events: the caller's sandboxes' state changes as they happen (WatchEvents), one line
 * each, until Ctrl-C, --count events or --for seconds. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "remote.h"

struct events_ctx {
    bool json;
    unsigned long count, seen;
};

#define EVENTS_DONE 4096 /* not an errno; on_event's "enough": ends the call without an error */

static int on_event(void *ud, const ProtobufCMessage *msg) {
    struct events_ctx *x = ud;
    const Cordon__V1__Event *ev = (const Cordon__V1__Event *)msg;
    time_t t = (time_t)(ev->unix_ms / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *state = ev->state ? cli_state_name(ev->state) : "";
    if (x->json)
        cli_json_print(json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)ev->id, "sandbox",
                                 ev->sandbox_id, "time", when, "state", state, "message",
                                 ev->message));
    else
        printf("%-6llu %s  %s  %-8s %s\n", (unsigned long long)ev->id, when, ev->sandbox_id, state,
               ev->message);
    fflush(stdout);
    if (x->count && ++x->seen >= x->count)
        return -EVENTS_DONE;
    return 0;
}

static void usage(FILE *f) {
    fputs("usage: cordon events [OPTIONS]\n"
          "\n"
          "Prints the state changes of the caller's sandboxes as they happen.\n"
          "\n"
          "options:\n"
          "  --sandbox ID       only this sandbox's\n"
          "  --after N          first replay those after event N (each line starts with its N)\n"
          "  --count N          stop after N events\n"
          "  --for S            stop after S seconds\n" CLI_REMOTE_USAGE,
          f);
}

int cli_events(int argc, char **argv) {
    static const struct option longopts[] = {{"sandbox", required_argument, NULL, 's'},
                                             {"after", required_argument, NULL, 'a'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"for", required_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    struct cli_remote r;
    cli_remote_init(&r);
    Cordon__V1__WatchEventsRequest q = CORDON__V1__WATCH_EVENTS_REQUEST__INIT;
    struct events_ctx x = {0};
    unsigned long for_s = 0;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        char *end = NULL;
        unsigned long long v = (c == 'a' || c == 'n' || c == 'f') ? strtoull(optarg, &end, 10) : 0;
        if (end && (*end || end == optarg)) {
            fprintf(stderr, "cordon events: a number, not '%s'\n", optarg);
            return CLI_EXIT_FAILURE;
        }
        if (c == 's')
            q.sandbox_id = optarg;
        else if (c == 'a')
            q.after_event_id = v;
        else if (c == 'n')
            x.count = (unsigned long)v;
        else if (c == 'f')
            for_s = (unsigned long)v;
        else if (!cli_remote_option(&r, c, optarg)) {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : CLI_EXIT_FAILURE;
        }
    }
    x.json = r.json;
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (optind != argc || cli_remote_open("events", &r, &c) < 0)
        return CLI_EXIT_FAILURE;
    cli_catch_interrupts();
    cdn_err *err = NULL;
    int rc = cdn_client_stream(c, "WatchEvents", &q.base, &cordon__v1__event__descriptor, on_event,
                               &x, &cli_interrupted, for_s ? (int)(for_s * 1000) : 0, &err);
    /* enough events, the time asked for, or Ctrl-C: all are how this command ends */
    if (rc == -EVENTS_DONE || (rc == -ETIMEDOUT && for_s) || rc == -EINTR) {
        cdn_err_free(err);
        return 0;
    }
    return rc < 0 ? cli_remote_fail("events", rc, err) : 0;
}
