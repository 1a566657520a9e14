/* SPDX-License-Identifier: Apache-2.0 */
/* cordon ps ID | logs [--follow] ID HANDLE | kill ID HANDLE [SIGNAL]: a sandbox's background
 * processes (started with `cordon exec --detach`). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "exec_stream.h"

static json_t *proc_json(const Cordon__V1__Process *p) {
    json_t *argv = json_array();
    for (size_t i = 0; i < p->n_argv; i++)
        json_array_append_new(argv, json_string(p->argv[i]));
    return json_pack("{s:s, s:o, s:s, s:i, s:i, s:I, s:I, s:I, s:I}", "handle", p->handle, "argv",
                     argv, "state", p->state, "exit_code", p->exit_code, "signal", p->signal,
                     "started_unix_ms", (json_int_t)p->started_unix_ms, "ended_unix_ms",
                     (json_int_t)p->ended_unix_ms, "output_bytes", (json_int_t)p->output_bytes,
                     "dropped_bytes", (json_int_t)p->dropped_bytes);
}

static void proc_print(const Cordon__V1__Process *p) {
    char how[32] = "";
    if (strcmp(p->state, "exited") == 0)
        snprintf(how, sizeof(how), " %d", p->exit_code);
    else if (p->signal)
        snprintf(how, sizeof(how), " (%s)", strsignal(p->signal));
    printf("%-6s  %-8s%-12s  %10llu  %10llu  ", p->handle, p->state, how,
           (unsigned long long)p->output_bytes, (unsigned long long)p->dropped_bytes);
    for (size_t i = 0; i < p->n_argv; i++)
        printf("%s%s", i ? " " : "", p->argv[i]);
    printf("\n");
}

/* Options common to the three; the positional arguments left from optind. */
static int parse(const char *cmd, const char *args, int argc, char **argv, struct cli_remote *r,
                 bool *follow) {
    static const struct option longopts[] = {{"follow", no_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    cli_remote_init(r);
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "fh", longopts, NULL)) != -1;) {
        if (c == 'f' && follow) {
            *follow = true;
        } else if (!cli_remote_option(r, c, optarg)) {
            fprintf(c == 'h' ? stdout : stderr, "usage: cordon %s [OPTIONS] %s\n\noptions:\n%s",
                    cmd, args, CLI_REMOTE_USAGE);
            if (c == 'h')
                exit(0);
            return -1;
        }
    }
    return 0;
}

int cli_ps(int argc, char **argv) {
    struct cli_remote r;
    if (parse("ps", "ID", argc, argv, &r, NULL) < 0 || argc - optind != 1) {
        fprintf(stderr, "usage: cordon ps [OPTIONS] ID\n");
        return CLI_EXIT_FAILURE;
    }
    Cordon__V1__ListProcessesRequest q = CORDON__V1__LIST_PROCESSES_REQUEST__INIT;
    q.sandbox_id = argv[optind];
    ProtobufCMessage *m = NULL;
    int code = cli_remote_unary("ps", &r, "ListProcesses", &q.base,
                                &cordon__v1__list_processes_response__descriptor, &m);
    if (code)
        return code;
    const Cordon__V1__ListProcessesResponse *l = (const Cordon__V1__ListProcessesResponse *)m;
    json_t *all = r.json ? json_array() : NULL;
    if (!all)
        printf("%-6s  %-20s  %10s  %10s  %s\n", "HANDLE", "STATE", "OUTPUT", "DROPPED", "COMMAND");
    for (size_t i = 0; i < l->n_processes; i++) {
        if (all)
            json_array_append_new(all, proc_json(l->processes[i]));
        else
            proc_print(l->processes[i]);
    }
    if (all)
        cli_json_print(all);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int cli_logs(int argc, char **argv) {
    struct cli_remote r;
    bool follow = false;
    if (parse("logs", "[--follow] ID HANDLE", argc, argv, &r, &follow) < 0 || argc - optind != 2) {
        fprintf(stderr, "usage: cordon logs [--follow] [OPTIONS] ID HANDLE\n");
        return CLI_EXIT_FAILURE;
    }
    Cordon__V1__ProcessLogsRequest q = CORDON__V1__PROCESS_LOGS_REQUEST__INIT;
    q.sandbox_id = argv[optind];
    q.handle = argv[optind + 1];
    q.follow = follow;
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (cli_remote_open("logs", &r, &c) < 0)
        return CLI_EXIT_FAILURE;
    cli_catch_interrupts();
    struct cli_exec x = {.cmd = "logs", .json = r.json};
    cdn_err *err = NULL;
    int rc = cli_exec_events(c, "ProcessLogs", &q.base, &x, &cli_interrupted, &err);
    /* Ended: its exit code (as `cordon exec` would have); still running: 0. */
    int code = rc < 0 ? cli_remote_fail("logs", rc, err) : x.exited ? cli_exec_code(&x) : 0;
    if (rc >= 0 && r.json)
        cli_json_print(cli_exec_json(&x, code));
    cli_exec_free(&x);
    return code;
}

int cli_kill(int argc, char **argv) {
    struct cli_remote r;
    if (parse("kill", "ID HANDLE [SIGNAL]", argc, argv, &r, NULL) < 0 || argc - optind < 2 ||
        argc - optind > 3) {
        fprintf(stderr, "usage: cordon kill [OPTIONS] ID HANDLE [SIGNAL]\n");
        return CLI_EXIT_FAILURE;
    }
    Cordon__V1__KillProcessRequest q = CORDON__V1__KILL_PROCESS_REQUEST__INIT;
    q.sandbox_id = argv[optind];
    q.handle = argv[optind + 1];
    if (argc - optind == 3) {
        const char *s = argv[optind + 2];
        if (strncasecmp(s, "SIG", 3) == 0)
            s += 3;
        static const struct {
            const char *name;
            int n;
        } names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                     {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                     {"TERM", SIGTERM}, {"STOP", SIGSTOP}, {"CONT", SIGCONT}};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !q.signal; i++)
            if (strcasecmp(s, names[i].name) == 0)
                q.signal = (uint32_t)names[i].n;
        char *end;
        if (!q.signal && ((q.signal = (uint32_t)strtoul(s, &end, 10)) == 0 || *end)) {
            fprintf(stderr, "cordon kill: '%s' is not a signal (TERM, KILL, INT, HUP, 9, ...)\n",
                    argv[optind + 2]);
            return CLI_EXIT_FAILURE;
        }
    }
    ProtobufCMessage *m = NULL;
    int code =
        cli_remote_unary("kill", &r, "KillProcess", &q.base, &cordon__v1__process__descriptor, &m);
    if (code)
        return code;
    if (r.json)
        cli_json_print(proc_json((const Cordon__V1__Process *)m));
    else
        proc_print((const Cordon__V1__Process *)m);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
