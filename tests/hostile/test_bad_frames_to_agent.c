/* SPDX-License-Identifier: Apache-2.0 */
/* Raw, malformed traffic to a real cordon-agent: it answers with an Error (naming the problem),
 * keeps serving where the framing is intact, hangs up where it is not, and never crashes. */
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"

struct raw {
    struct th_agent a;
    struct cdn_frame_decoder *dec;
};

static void send_hello(struct raw *r, uint32_t version) {
    CordonAgent__Hello h = CORDON_AGENT__HELLO__INIT;
    h.protocol_version = version;
    h.software_version = (char *)"raw-test";
    h.max_frame_bytes = 1u << 20;
    h.stream_window = 1u << 20;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    th_send_env(r->a.host_fd, &env);
}

static cdn_envelope *expect(struct raw *r, CordonAgent__Envelope__BodyCase bc) {
    cdn_envelope *env = NULL;
    int got = th_recv_env(r->a.host_fd, r->dec, 5000, &env);
    if (got != 1)
        FAIL("expected %s, got %s", cdn_frame_body_name(bc), got == 0 ? "nothing" : "EOF");
    if (env->body_case != bc)
        FAIL("expected %s, got %s%s%s", cdn_frame_body_name(bc),
             cdn_frame_body_name(env->body_case),
             env->body_case == CORDON_AGENT__ENVELOPE__BODY_ERROR ? ": " : "",
             env->body_case == CORDON_AGENT__ENVELOPE__BODY_ERROR ? env->error->message : "");
    return env;
}

static void start(struct raw *r, const char *const *args) {
    th_agent_spawn(&r->a, args);
    ASSERT_EQ(cdn_frame_decoder_new(16u << 20, &r->dec), 0);
    send_hello(r, CDN_PROTOCOL_VERSION);
    expect(r, CORDON_AGENT__ENVELOPE__BODY_HELLO);
}

static void ping(struct raw *r, uint64_t stream) {
    CordonAgent__Ping p = CORDON_AGENT__PING__INIT;
    p.nonce = 42;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = stream;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_PING;
    env.ping = &p;
    th_send_env(r->a.host_fd, &env);
    ASSERT_EQ(expect(r, CORDON_AGENT__ENVELOPE__BODY_PONG)->pong->nonce, 42);
}

static void expect_error(struct raw *r, CordonAgent__ErrorCode code, const char *needle) {
    cdn_envelope *env = expect(r, CORDON_AGENT__ENVELOPE__BODY_ERROR);
    ASSERT_EQ(env->error->code, code);
    ASSERT_CONTAINS(env->error->message, needle);
}

/* The agent must end by itself, cleanly (exit 0, no sanitizer report, no signal). */
static void expect_clean_exit(struct raw *r) {
    int status = th_agent_wait(&r->a, 5000);
    ASSERT_TRUE(status != -1);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    cdn_frame_decoder_free(r->dec);
    safe_close(r->a.host_fd);
}

static void finish(struct raw *r) {
    th_agent_kill(&r->a);
    cdn_frame_decoder_free(r->dec);
}

TEST(oversized_frame_is_answered_then_the_channel_closes) {
    struct raw r;
    start(&r, NULL);
    const uint8_t hdr[] = {0x00, 0x20, 0x00, 0x00}; /* 2 MiB > the agent's 1 MiB */
    th_send_bytes(r.a.host_fd, hdr, sizeof(hdr));
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_FRAME,
                 "frame length 2097152 is over the limit");
    expect_clean_exit(&r);
}

TEST(truncated_frame_then_hang_up) {
    struct raw r;
    start(&r, NULL);
    const uint8_t half[] = {0x00, 0x00, 0x01, 0x00, 0x08};
    th_send_bytes(r.a.host_fd, half, sizeof(half));
    shutdown(r.a.host_fd, SHUT_WR);
    expect_clean_exit(&r);
}

TEST(garbage_protobuf_is_answered_and_service_goes_on) {
    struct raw r;
    start(&r, NULL);
    const uint8_t junk[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
    th_send_bytes(r.a.host_fd, junk, sizeof(junk));
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_FRAME, "not a valid Envelope");
    ping(&r, 1);
    finish(&r);
}

TEST(unknown_stream_is_answered) {
    struct raw r;
    start(&r, NULL);
    CordonAgent__StdinData sd = CORDON_AGENT__STDIN_DATA__INIT;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 999;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA;
    env.stdin_data = &sd;
    th_send_env(r.a.host_fd, &env);
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_UNKNOWN_STREAM, "unknown stream 999");
    ping(&r, 1);
    finish(&r);
}

TEST(credit_violation_ends_the_stream) {
    struct raw r;
    const char *args[] = {"--window", "65536", NULL};
    start(&r, args);
    const char *argv[] = {"sleep", "30"};
    CordonAgent__Exec x = CORDON_AGENT__EXEC__INIT;
    x.n_argv = 2;
    x.argv = (char **)argv;
    x.stdin = CORDON_AGENT__STDIN_MODE__STDIN_PIPE;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 1;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EXEC;
    env.exec = &x;
    th_send_env(r.a.host_fd, &env);
    uint32_t pid = expect(&r, CORDON_AGENT__ENVELOPE__BODY_STARTED)->started->pid;
    _cleanup_free_ uint8_t *big = calloc(1, 70000);
    CordonAgent__StdinData sd = CORDON_AGENT__STDIN_DATA__INIT;
    sd.data.data = big;
    sd.data.len = 70000;
    env = (cdn_envelope)CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 1;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA;
    env.stdin_data = &sd;
    th_send_env(r.a.host_fd, &env);
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_CREDIT,
                 "stdin_data of 70000 bytes exceeds the 65536 bytes of credit");
    /* The stream's command was killed with it. */
    uint64_t end = th_now_ms() + 3000;
    while (kill((pid_t)pid, 0) == 0 && th_now_ms() < end)
        usleep(10000);
    ASSERT_TRUE(kill((pid_t)pid, 0) < 0);
    ping(&r, 3);
    finish(&r);
}

TEST(requests_before_hello_and_bad_requests_are_answered) {
    struct raw r;
    th_agent_spawn(&r.a, NULL);
    ASSERT_EQ(cdn_frame_decoder_new(16u << 20, &r.dec), 0);
    CordonAgent__Ping p = CORDON_AGENT__PING__INIT;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 1;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_PING;
    env.ping = &p;
    th_send_env(r.a.host_fd, &env);
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST, "ping before hello");
    /* A host speaking another protocol is told which one the agent speaks. */
    send_hello(&r, 99);
    expect(&r, CORDON_AGENT__ENVELOPE__BODY_HELLO);
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_VERSION,
                 "agent speaks protocol 1, host asked for 99");
    send_hello(&r, CDN_PROTOCOL_VERSION);
    expect(&r, CORDON_AGENT__ENVELOPE__BODY_HELLO);
    /* Empty argv. */
    CordonAgent__Exec x = CORDON_AGENT__EXEC__INIT;
    env = (cdn_envelope)CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 5;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EXEC;
    env.exec = &x;
    th_send_env(r.a.host_fd, &env);
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST, "argv is empty");
    /* Reusing a stream id. */
    th_send_env(r.a.host_fd, &env);
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST, "stream ids must increase");
    /* A signal out of range on a live command. */
    const char *argv[] = {"sleep", "30"};
    x.n_argv = 2;
    x.argv = (char **)argv;
    env.stream = 7;
    th_send_env(r.a.host_fd, &env);
    expect(&r, CORDON_AGENT__ENVELOPE__BODY_STARTED);
    CordonAgent__Signal sg = CORDON_AGENT__SIGNAL__INIT;
    sg.signal = 1000;
    env = (cdn_envelope)CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 7;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_SIGNAL;
    env.signal = &sg;
    th_send_env(r.a.host_fd, &env);
    expect_error(&r, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                 "signal 1000 is not a valid signal");
    ping(&r, 9);
    finish(&r);
}

TEST(version_mismatch_message_on_the_host) {
    struct th_agent a;
    th_agent_spawn(&a, NULL);
    struct cdn_channel_opts opts = {.name = "vm cordon-test", .protocol_version = 99};
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    int fd = a.host_fd;
    a.host_fd = -1;
    ASSERT_FAILS(cdn_channel_open(fd, &opts, &ch, &err), err,
                 "vm cordon-test: agent 0.1.0 speaks protocol 1, this host speaks 99: rebuild the "
                 "guest image with a matching cordon-agent");
    cdn_err_free(err);
    th_agent_kill(&a);
}

TEST(shutdown_kills_commands_and_the_agent_exits) {
    struct th_agent a;
    struct cdn_channel *ch = th_channel(&a, NULL);
    const char *argv[] = {"sh", "-c", "echo $$; exec sleep 30", NULL};
    struct cdn_exec_spec spec = {.argv = argv, .argc = 3};
    uint64_t id;
    cdn_err *err = NULL;
    struct th_output o = {0};
    ASSERT_OK(cdn_channel_exec_start(ch, &spec, th_collect, &o, &id, &err), err);
    uint64_t end = th_now_ms() + 5000;
    while (!strchr(th_output_str(&o, 1), '\n') && th_now_ms() < end)
        ASSERT_OK(cdn_channel_poll(ch, 50, &err), err);
    pid_t pid = (pid_t)atoi(th_output_str(&o, 1));
    ASSERT_TRUE(pid > 0 && kill(pid, 0) == 0);
    ASSERT_OK(cdn_channel_shutdown(ch, true, 5000, &err), err);
    int status = th_agent_wait(&a, 5000);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    end = th_now_ms() + 3000;
    while (kill(pid, 0) == 0 && th_now_ms() < end)
        usleep(10000);
    ASSERT_TRUE(kill(pid, 0) < 0);
    th_output_free(&o);
    cdn_channel_free(ch);
}

/* A new host on the same port (as after a daemon restart on a serial port) says hello again: the
 * old session's commands are ended and stream numbering starts over. */
TEST(a_second_hello_starts_a_new_session) {
    struct raw r;
    start(&r, NULL);
    const char *argv[] = {"sleep", "30"};
    CordonAgent__Exec x = CORDON_AGENT__EXEC__INIT;
    x.n_argv = 2;
    x.argv = (char **)argv;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = 9;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EXEC;
    env.exec = &x;
    th_send_env(r.a.host_fd, &env);
    uint32_t pid = expect(&r, CORDON_AGENT__ENVELOPE__BODY_STARTED)->started->pid;
    send_hello(&r, CDN_PROTOCOL_VERSION);
    expect(&r, CORDON_AGENT__ENVELOPE__BODY_HELLO);
    uint64_t end = th_now_ms() + 3000;
    while (kill((pid_t)pid, 0) == 0 && th_now_ms() < end)
        usleep(10000);
    ASSERT_TRUE(kill((pid_t)pid, 0) < 0);
    const char *argv2[] = {"true"};
    x.n_argv = 1;
    x.argv = (char **)argv2;
    env.stream = 1;
    th_send_env(r.a.host_fd, &env);
    expect(&r, CORDON_AGENT__ENVELOPE__BODY_STARTED);
    ASSERT_EQ(expect(&r, CORDON_AGENT__ENVELOPE__BODY_EXIT)->exit->exit_code, 0);
    finish(&r);
}
