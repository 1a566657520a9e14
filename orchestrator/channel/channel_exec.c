/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_channel exec: start a command, feed its stdin, signal it, wait for its exit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "channel_int.h"
#include "cleanup.h"

static struct hstream *exec_stream(struct cdn_channel *ch, uint64_t id, cdn_err **err) {
    struct hstream *s = chan_stream_find(ch, id);
    if (!s || s->kind != HS_EXEC || s->cancelled) {
        cdn_err_set(err, ENOENT, "%s: no exec stream %llu", ch->name, (unsigned long long)id);
        return NULL;
    }
    return s;
}

int cdn_channel_exec_start(struct cdn_channel *ch, const struct cdn_exec_spec *spec,
                           cdn_output_fn on_output, void *ud, uint64_t *stream, cdn_err **err) {
    if (ch->fault)
        return chan_fail(ch, err);
    if (spec->argc == 0)
        return cdn_err_set(err, EINVAL, "%s: exec needs a command", ch->name);
    CordonAgent__Exec x = CORDON_AGENT__EXEC__INIT;
    x.n_argv = spec->argc;
    x.argv = (char **)spec->argv;
    x.n_env = spec->envc;
    x.env = (char **)spec->env;
    x.cwd = (char *)(spec->cwd ? spec->cwd : "");
    x.timeout_ms = spec->timeout_ms;
    x.stdin = spec->stdin_pipe ? CORDON_AGENT__STDIN_MODE__STDIN_PIPE
                               : CORDON_AGENT__STDIN_MODE__STDIN_NULL;
    x.pty = spec->pty;
    x.pty_rows = spec->pty_rows;
    x.pty_cols = spec->pty_cols;
    x.output_limit = spec->output_limit;
    x.clear_env = spec->clear_env;
    _cleanup_free_ CordonAgent__ResourceLimit *rl = calloc(spec->n_rlimits + 1, sizeof(*rl));
    _cleanup_free_ CordonAgent__ResourceLimit **rlp = calloc(spec->n_rlimits + 1, sizeof(*rlp));
    if (!rl || !rlp)
        return cdn_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < spec->n_rlimits; i++) {
        cordon_agent__resource_limit__init(&rl[i]);
        rl[i].resource = (CordonAgent__Rlimit)spec->rlimits[i].resource;
        rl[i].soft = spec->rlimits[i].soft;
        rl[i].hard = spec->rlimits[i].hard;
        rlp[i] = &rl[i];
    }
    x.n_rlimits = spec->n_rlimits;
    x.rlimits = rlp;
    CordonAgent__Credentials user = CORDON_AGENT__CREDENTIALS__INIT;
    if (spec->as_user) {
        user.uid = spec->uid;
        user.gid = spec->gid;
        user.n_groups = spec->n_groups;
        user.groups = (uint32_t *)spec->groups;
        x.user = &user;
    }
    struct hstream *s = chan_stream_new(ch, HS_EXEC);
    if (!s)
        return cdn_err_set(err, ENOMEM, "out of memory");
    s->on_data = on_output;
    s->ud = ud;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EXEC;
    env.exec = &x;
    int r = chan_send(ch, s->id, &env, err);
    if (r < 0) {
        s->done = true;
        chan_stream_release(ch, s);
        return r;
    }
    *stream = s->id;
    return 0;
}

int cdn_channel_exec_stdin(struct cdn_channel *ch, uint64_t stream, const void *data, size_t len,
                           int timeout_ms, cdn_err **err) {
    struct hstream *s = exec_stream(ch, stream, err);
    if (!s)
        return -ENOENT;
    return chan_send_data(ch, s, CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA, data, len, false,
                          chan_deadline(ch, timeout_ms), err);
}

int cdn_channel_exec_stdin_close(struct cdn_channel *ch, uint64_t stream, cdn_err **err) {
    struct hstream *s = exec_stream(ch, stream, err);
    if (!s)
        return -ENOENT;
    CordonAgent__StdinClose sc = CORDON_AGENT__STDIN_CLOSE__INIT;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_STDIN_CLOSE;
    env.stdin_close = &sc;
    return chan_send(ch, s->id, &env, err);
}

int cdn_channel_exec_signal(struct cdn_channel *ch, uint64_t stream, int signo, cdn_err **err) {
    struct hstream *s = exec_stream(ch, stream, err);
    if (!s)
        return -ENOENT;
    CordonAgent__Signal sg = CORDON_AGENT__SIGNAL__INIT;
    sg.signal = (uint32_t)signo;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_SIGNAL;
    env.signal = &sg;
    return chan_send(ch, s->id, &env, err);
}

int cdn_channel_exec_done(struct cdn_channel *ch, uint64_t stream) {
    struct hstream *s = chan_stream_find(ch, stream);
    return s && s->done ? 1 : 0;
}

int cdn_channel_exec_wait(struct cdn_channel *ch, uint64_t stream, int timeout_ms,
                          struct cdn_exec_result *res, cdn_err **err) {
    struct hstream *s = exec_stream(ch, stream, err);
    if (!s)
        return -ENOENT;
    int r = chan_wait_done(ch, s, chan_deadline(ch, timeout_ms), "exec", err);
    if (r < 0) {
        chan_stream_release(ch, s); /* cancels: the agent kills the process group */
        return r;
    }
    if (s->err) {
        r = cdn_err_set(err, cdn_err_code(s->err), "%s", cdn_err_msg(s->err));
    } else if (s->cancelled) {
        r = cdn_err_set(err, ECANCELED, "%s: exec stream %llu was cancelled by its output handler",
                        ch->name, (unsigned long long)s->id);
    } else {
        *res = s->exit;
        r = 0;
    }
    chan_stream_release(ch, s);
    return r;
}

int cdn_channel_exec(struct cdn_channel *ch, const struct cdn_exec_spec *spec,
                     cdn_output_fn on_output, void *ud, int timeout_ms, struct cdn_exec_result *res,
                     cdn_err **err) {
    uint64_t id;
    int r = cdn_channel_exec_start(ch, spec, on_output, ud, &id, err);
    if (r < 0)
        return r;
    return cdn_channel_exec_wait(ch, id, timeout_ms, res, err);
}
