/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: the real cordon binary (next to the agent under test), as a user runs it. */
#pragma once

#include <sys/types.h>

const char *th_cordon_bin(void);
/* Starts `cordon SUB --state STATE [--images IMAGES, for run] ARGS...` with stdin on /dev/null
 * (no terminal: nobody to ask) and stdout and stderr going to STATE/TAG.out and STATE/TAG.err. */
pid_t th_cordon_spawn(const char *sub, const char *state, const char *tag, const char *const *args);
/* Its exit code (-1 if it did not exit). */
int th_cordon_wait(pid_t pid);
/* STATE/TAG.EXT (NULL if absent); caller frees. */
char *th_cordon_output(const char *state, const char *tag, const char *ext);

struct th_ran {
    int code;
    char *out, *err;
};
/* Spawns, waits, and reads both outputs. */
struct th_ran th_cordon(const char *sub, const char *state, const char *tag,
                        const char *const *args);
void th_ran_free(struct th_ran *r);

/* The same for a client subcommand talking to cordond: `cordon SUB --addr ADDR ARGS...`, its
 * outputs in DIR/TAG.{out,err}. */
pid_t th_cordon_spawn_at(const char *addr, const char *sub, const char *dir, const char *tag,
                         const char *const *args);
struct th_ran th_cordon_at(const char *addr, const char *sub, const char *dir, const char *tag,
                           const char *const *args);

/* `cordon SUB ARGS...` against the daemon of a test's env e (fields addr and dir), its outputs
 * in e.dir/TAG.{out,err}; the _OK form fails the test with what it said unless it exits 0. */
#define TH_CLI(e, tag, sub, ...)                                                                   \
    th_cordon_at((e).addr, sub, (e).dir, tag, (const char *[]){__VA_ARGS__, NULL})
#define TH_CLI_OK(e, tag, sub, ...)                                                                \
    ({                                                                                             \
        struct th_ran r_ = TH_CLI(e, tag, sub, __VA_ARGS__);                                       \
        if (r_.code != 0)                                                                          \
            FAIL("cordon %s: exit %d: %s", sub, r_.code, r_.err);                                  \
        r_;                                                                                        \
    })

/* A string field of a JSON object's text (NULL when absent or not a string); caller frees. */
char *th_json_str(const char *text, const char *key);
