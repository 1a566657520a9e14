/* SPDX-License-Identifier: Apache-2.0 */
/* A misbehaving guest (a forked process speaking raw frames) against the host channel: each
 * violation must end in a clear error on the host, never a crash, a hang or unbounded memory. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"

typedef void (*guest_fn)(int fd, struct cdn_frame_decoder *dec);

static pid_t start_guest(guest_fn fn, int *host_fd) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        struct cdn_frame_decoder *dec = NULL;
        cdn_frame_decoder_new(16u << 20, &dec);
        fn(sv[1], dec);
        pause(); /* keep the socket open: the host must act on what it got, not on EOF */
        _exit(0);
    }
    close(sv[1]);
    *host_fd = sv[0];
    return pid;
}

static void stop_guest(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void send_hello(int fd, uint32_t version, uint32_t window) {
    static const char *caps[] = {"exec", "files", "list_dir"};
    CordonAgent__Hello h = CORDON_AGENT__HELLO__INIT;
    h.capabilities = (char **)caps;
    h.n_capabilities = ELEMENTSOF(caps);
    h.protocol_version = version;
    h.software_version = (char *)"hostile-guest";
    h.max_frame_bytes = 1u << 20;
    h.stream_window = window;
    h.max_streams = 16;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    th_send_env(fd, &env);
}

/* Reads the host's hello and answers like a good agent; returns after that. */
static void handshake(int fd, struct cdn_frame_decoder *dec) {
    cdn_envelope *env;
    if (th_recv_env(fd, dec, 5000, &env) == 1)
        send_hello(fd, CDN_PROTOCOL_VERSION, 1u << 20);
}

/* Waits for the host's first Exec and returns its stream id. */
static uint64_t await_exec(int fd, struct cdn_frame_decoder *dec) {
    cdn_envelope *env;
    while (th_recv_env(fd, dec, 5000, &env) == 1)
        if (env->body_case == CORDON_AGENT__ENVELOPE__BODY_EXEC)
            return env->stream;
    _exit(3);
}

static void send_output(int fd, uint64_t stream, size_t n, uint32_t out_fd) {
    uint8_t *data = calloc(1, n);
    CordonAgent__Output o = CORDON_AGENT__OUTPUT__INIT;
    o.fd = out_fd;
    o.data.data = data;
    o.data.len = n;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = stream;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_OUTPUT;
    env.output = &o;
    th_send_env(fd, &env);
    free(data);
}

static void g_silent(int fd, struct cdn_frame_decoder *dec) { (void)fd, (void)dec; }

static void g_old_version(int fd, struct cdn_frame_decoder *dec) {
    cdn_envelope *env;
    th_recv_env(fd, dec, 5000, &env);
    send_hello(fd, 7, 1u << 20);
}

static void g_oversized(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    const uint8_t hdr[] = {0x7f, 0xff, 0xff, 0xff}; /* claims 2 GiB */
    th_send_bytes(fd, hdr, sizeof(hdr));
}

static void g_credit_violation(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    uint64_t id = await_exec(fd, dec);
    send_output(fd, id, 65536 + 1, 1); /* the host granted 64 KiB */
}

static void g_garbage(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    const uint8_t junk[] = {0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    th_send_bytes(fd, junk, sizeof(junk));
}

static void g_unknown_stream(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    send_output(fd, 999, 10, 1);
}

static void g_wrong_kind(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    uint64_t id = await_exec(fd, dec);
    CordonAgent__FileData fd_msg = CORDON_AGENT__FILE_DATA__INIT;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = id;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_FILE_DATA;
    env.file_data = &fd_msg;
    th_send_env(fd, &env);
}

static void g_bad_fd(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    uint64_t id = await_exec(fd, dec);
    send_output(fd, id, 10, 7);
}

static void g_stall_mid_frame(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    const uint8_t half[] = {0, 0, 1, 0, 0x08, 0x01}; /* 256 bytes promised, 2 sent */
    th_send_bytes(fd, half, sizeof(half));
}

static void g_hang_up_mid_frame(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    const uint8_t half[] = {0, 0, 1, 0, 0x08};
    th_send_bytes(fd, half, sizeof(half));
    _exit(0);
}

static void send_egress_open(int fd, uint64_t stream) {
    CordonAgent__EgressOpen o = CORDON_AGENT__EGRESS_OPEN__INIT;
    o.host = (char *)"example.com";
    o.port = 443;
    o.connect = true;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = stream;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EGRESS_OPEN;
    env.egress_open = &o;
    th_send_env(fd, &env);
}

static void g_egress_ids_backwards(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    send_egress_open(fd, 4);
    send_egress_open(fd, 2);
}

static void g_egress_on_host_stream(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    send_egress_open(fd, 3);
}

static void g_egress_data_before_ready(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    await_exec(fd, dec);
    send_egress_open(fd, 2);
    CordonAgent__EgressData d = CORDON_AGENT__EGRESS_DATA__INIT;
    d.data.data = (uint8_t *)"GET / HTTP/1.1\r\n\r\n";
    d.data.len = 18;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 2;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA;
    env.egress_data = &d;
    th_send_env(fd, &env);
}

/* Egress hooks that take their time and refuse: a decision is still pending when data comes. */
static int slow_refusal(void *ud, const char *host, uint16_t port, bool tunnel, void **token,
                        char *why, size_t size) {
    (void)ud, (void)host, (void)port, (void)tunnel;
    *token = NULL;
    usleep(200000);
    snprintf(why, size, "refused by the test");
    return -EPERM;
}

struct scenario {
    const char *name;
    guest_fn guest;
    bool fails_at_open;
    const char *message;
    int code;
};

static const struct scenario scenarios[] = {
    {"silent guest", g_silent, true, "agent did not answer hello within 300 ms", ETIMEDOUT},
    {"old protocol", g_old_version, true,
     "agent hostile-guest speaks protocol 7, this host speaks 1", EPROTO},
    {"oversized frame", g_oversized, false,
     "guest fault: frame length 2147483647 is over the limit", EPROTO},
    {"credit violation", g_credit_violation, false,
     "guest fault: credit violation: stream 1 sent 65537 bytes with 65536 granted", EPROTO},
    {"garbage protobuf", g_garbage, false, "guest fault: a 6-byte frame is not a valid Envelope",
     EPROTO},
    {"unknown stream", g_unknown_stream, false,
     "guest fault: output on stream 999, which is not open", EPROTO},
    {"wrong kind", g_wrong_kind, false, "guest fault: file_data on exec stream 1", EPROTO},
    {"bad output fd", g_bad_fd, false, "guest fault: output on fd 7", EPROTO},
    {"stall mid-frame", g_stall_mid_frame, false, "exec did not finish in time", ETIMEDOUT},
    {"hang-up mid-frame", g_hang_up_mid_frame, false, "the agent closed the channel", EPIPE},
    {"egress ids backwards", g_egress_ids_backwards, false,
     "guest fault: egress stream 2 opened after 4: ids must increase", EPROTO},
    {"egress on a host stream", g_egress_on_host_stream, false,
     "guest fault: egress_open on stream 3, which is not open", EPROTO},
    {"egress data before ready", g_egress_data_before_ready, false,
     "guest fault: egress data on stream 2 before it was ready", EPROTO},
};

TEST(each_guest_violation_is_a_clear_host_error) {
    for (size_t i = 0; i < ELEMENTSOF(scenarios); i++) {
        const struct scenario *sc = &scenarios[i];
        int fd;
        pid_t pid = start_guest(sc->guest, &fd);
        struct cdn_channel_opts opts = {
            .name = "vm hostile", .stream_window = 65536, .handshake_timeout_ms = 300};
        struct cdn_channel *ch = NULL;
        cdn_err *err = NULL;
        int r = cdn_channel_open(fd, &opts, &ch, &err);
        if (sc->fails_at_open) {
            if (r >= 0)
                FAIL("%s: open succeeded", sc->name);
        } else {
            if (r < 0)
                FAIL("%s: open failed: %s", sc->name, cdn_err_msg(err));
            struct cdn_channel_egress hooks = {.open = slow_refusal};
            cdn_channel_set_egress(ch, &hooks);
            const char *argv[] = {"true", NULL};
            struct cdn_exec_spec spec = {.argv = argv, .argc = 1};
            struct cdn_exec_result res;
            r = cdn_channel_exec(ch, &spec, NULL, NULL, 500, &res, &err);
            if (r >= 0)
                FAIL("%s: exec succeeded", sc->name);
        }
        if (!strstr(cdn_err_msg(err), sc->message))
            FAIL("%s: \"%s\" lacks \"%s\"", sc->name, cdn_err_msg(err), sc->message);
        if (!strstr(cdn_err_msg(err), "vm hostile"))
            FAIL("%s: \"%s\" does not name the vm", sc->name, cdn_err_msg(err));
        ASSERT_EQ(cdn_err_code(err), sc->code);
        /* After a fault every call fails the same way, at once. */
        if (ch && sc->code == EPROTO) {
            uint64_t t0 = th_now_ms();
            cdn_err *again = NULL;
            ASSERT_TRUE(cdn_channel_ping(ch, 5000, &again) < 0);
            ASSERT_CONTAINS(cdn_err_msg(again), sc->message);
            ASSERT_TRUE(th_now_ms() - t0 < 1000);
            cdn_err_free(again);
        }
        cdn_err_free(err);
        cdn_channel_free(ch);
        stop_guest(pid);
    }
}

/* A guest that keeps sending within its credit but never finishes cannot hold a caller past its
 * deadline, and the host's memory stays flat while it floods. */
static void g_endless(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    uint64_t id = await_exec(fd, dec);
    uint64_t credit = 65536;
    for (;;) {
        while (credit >= 16384) {
            send_output(fd, id, 16384, 1);
            credit -= 16384;
        }
        cdn_envelope *env;
        if (th_recv_env(fd, dec, 5000, &env) != 1)
            _exit(0);
        if (env->body_case == CORDON_AGENT__ENVELOPE__BODY_CREDIT)
            credit += env->credit->bytes;
    }
}

static int discard(void *ud, int fd, const uint8_t *p, size_t n) {
    (void)fd, (void)p;
    *(uint64_t *)ud += n;
    return 0;
}

TEST(endless_output_meets_the_deadline) {
    int fd;
    pid_t pid = start_guest(g_endless, &fd);
    struct cdn_channel_opts opts = {.name = "vm endless", .stream_window = 65536};
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_open(fd, &opts, &ch, &err), err);
    const char *argv[] = {"yes", NULL};
    struct cdn_exec_spec spec = {.argv = argv, .argc = 1};
    struct cdn_exec_result res;
    uint64_t got = 0, t0 = th_now_ms();
    ASSERT_FAILS(cdn_channel_exec(ch, &spec, discard, &got, 1000, &res, &err), err,
                 "did not finish in time");
    uint64_t took = th_now_ms() - t0;
    ASSERT_TRUE(took >= 1000 && took < 3000);
    ASSERT_TRUE(got > 65536); /* it really did stream, under credit */
    cdn_err_free(err);
    cdn_channel_free(ch);
    stop_guest(pid);
}

/* Acknowledges every exec and then ignores everything, cancellations included. */
static void g_never_ends(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    cdn_envelope *env;
    while (th_recv_env(fd, dec, 10000, &env) == 1) {
        if (env->body_case != CORDON_AGENT__ENVELOPE__BODY_EXEC)
            continue;
        CordonAgent__Started st = CORDON_AGENT__STARTED__INIT;
        st.pid = 1;
        cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
        out.stream = env->stream;
        out.body_case = CORDON_AGENT__ENVELOPE__BODY_STARTED;
        out.started = &st;
        th_send_env(fd, &out);
    }
}

TEST(cancellations_never_confirmed_become_a_fault) {
    int fd;
    pid_t pid = start_guest(g_never_ends, &fd);
    struct cdn_channel_opts opts = {.name = "vm stubborn"};
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_open(fd, &opts, &ch, &err), err);
    const char *argv[] = {"true", NULL};
    struct cdn_exec_spec spec = {.argv = argv, .argc = 1};
    struct cdn_exec_result res;
    int i = 0;
    for (; i < 1000; i++) {
        int r = cdn_channel_exec(ch, &spec, NULL, NULL, 1, &res, &err);
        ASSERT_TRUE(r < 0);
        if (cdn_err_code(err) != ETIMEDOUT)
            break;
    }
    ASSERT_CONTAINS(cdn_err_msg(err), "vm stubborn: guest fault: 256 cancelled streams were never "
                                      "ended by the agent");
    ASSERT_LE(i, 260);
    cdn_err_free(err);
    cdn_channel_free(ch);
    stop_guest(pid);
}

/* ---- listings that lie ---- */

enum lie {
    LIE_TOO_MANY,
    LIE_SLASH,
    LIE_DOTDOT,
    LIE_ORDER,
    LIE_TWICE,
    LIE_TOTAL,
    LIE_TYPE,
    LIE_TARGET
};
static enum lie the_lie; /* set before the guest forks */

static void g_lying_listing(int fd, struct cdn_frame_decoder *dec) {
    handshake(fd, dec);
    cdn_envelope *env;
    while (th_recv_env(fd, dec, 5000, &env) == 1 &&
           env->body_case != CORDON_AGENT__ENVELOPE__BODY_LIST_DIR)
        ;
    const char *names[] = {"a", "b", "c"};
    CordonAgent__DirEntry e[3], *ptrs[3];
    for (size_t i = 0; i < 3; i++) {
        cordon_agent__dir_entry__init(&e[i]);
        e[i].name.data = (uint8_t *)names[i];
        e[i].name.len = 1;
        e[i].type = CORDON_AGENT__ENTRY_TYPE__ENTRY_FILE;
        ptrs[i] = &e[i];
    }
    CordonAgent__DirListing l = CORDON_AGENT__DIR_LISTING__INIT;
    l.entries = ptrs;
    l.n_entries = 2; /* the host asked for 2 */
    l.total = 2;
    switch (the_lie) {
    case LIE_TOO_MANY: l.n_entries = l.total = 3; break;
    case LIE_SLASH: e[1].name = (ProtobufCBinaryData){2, (uint8_t *)"b/"}; break;
    case LIE_DOTDOT: e[0].name = (ProtobufCBinaryData){2, (uint8_t *)".."}; break;
    case LIE_ORDER: e[0].name.data = (uint8_t *)"c"; break;
    case LIE_TWICE: e[1].name.data = (uint8_t *)"a"; break;
    case LIE_TOTAL: l.total = 5; break; /* more than listed, yet not truncated */
    case LIE_TYPE: e[1].type = 9; break;
    case LIE_TARGET: e[0].link_target = (ProtobufCBinaryData){1, (uint8_t *)"x"}; break;
    }
    cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
    out.stream = env->stream;
    out.body_case = CORDON_AGENT__ENVELOPE__BODY_DIR_LISTING;
    out.dir_listing = &l;
    th_send_env(fd, &out);
}

TEST(a_listing_that_lies_is_a_guest_fault) {
    static const struct {
        enum lie lie;
        const char *message;
    } cases[] = {
        {LIE_TOO_MANY, "more entries than asked for"},
        {LIE_SLASH, "a name with '/' or NUL"},
        {LIE_DOTDOT, "'.' or '..'"},
        {LIE_ORDER, "names out of order or listed twice"},
        {LIE_TWICE, "names out of order or listed twice"},
        {LIE_TOTAL, "a total that does not match its entries"},
        {LIE_TYPE, "an unknown entry type"},
        {LIE_TARGET, "a link target on an entry that is not a symlink"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        the_lie = cases[i].lie;
        int fd;
        pid_t pid = start_guest(g_lying_listing, &fd);
        struct cdn_channel_opts opts = {.name = "vm liar"};
        struct cdn_channel *ch = NULL;
        cdn_err *err = NULL;
        ASSERT_OK(cdn_channel_open(fd, &opts, &ch, &err), err);
        struct cdn_dir_listing *l = NULL;
        ASSERT_FAILS(cdn_channel_list_dir(ch, "/x", 2, 5000, &l, &err), err, cases[i].message);
        ASSERT_CONTAINS(cdn_err_msg(err), "vm liar: guest fault: list_dir stream 1");
        ASSERT_EQ(cdn_err_code(err), EPROTO);
        ASSERT_TRUE(l == NULL);
        cdn_err_free(err);
        cdn_channel_free(ch);
        stop_guest(pid);
    }
}
