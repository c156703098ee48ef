/* Tool calls (tool/tool_dispatch.h) against a real nats-server that this
 * test starts on a free port in a temporary directory, and tool services
 * played by subscriptions of a second connection: the headers and the
 * idempotency key the service receives, a timeout then a retry then
 * success (same key), no responders retried then the outcome
 * no_responders, bad replies (invalid UTF-8, over the cap, a NATS status),
 * a permanent failure, a micro service error, subject overrides, the
 * task's deadline, parallel calls completing independently, and
 * cancellation at destroy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_nats.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/mailbox.h"
#include "tool/tool_dispatch.h"

#define TIMEOUT_MS 300
#define PARALLEL 20
#define SLOW_MS 200

typedef struct fixture {
    aq_test_nats srv;
    natsConnection *nc;  /* the dispatcher's */
    natsConnection *svc; /* the tool services' */
    natsSubscription *subs[2];
    struct event_base *base;
    aq_mailbox *mb;
    aq_tool_dispatcher *d;
    pthread_mutex_t lock;
    int seen_drop_first; /* requests the drop_first tool got */
    char keys[8][128];   /* idempotency keys drop_first saw */
} fixture;

static fixture F;

/* ---- the server ---- */

/* ---- the tool services ---- */

static void respond(natsMsg *req, const char *body, size_t len)
{
    natsConnection_Publish(F.svc, natsMsg_GetReply(req), body, (int)len);
}

static void respond_text(natsMsg *req, const char *body)
{
    respond(req, body, strlen(body));
}

static const char *hdr(natsMsg *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : "";
}

static void *slow_reply(void *arg)
{
    natsMsg *req = arg;
    usleep(SLOW_MS * 1000);
    char body[256];
    snprintf(body, sizeof(body), "slow %.*s", natsMsg_GetDataLength(req), /* plain text */
             natsMsg_GetData(req));
    respond_text(req, body);
    natsMsg_Destroy(req);
    return NULL;
}

/* One callback plays every tool, by the subject's last token. */
static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *req, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    const char *subj = natsMsg_GetSubject(req);
    const char *tool = strrchr(subj, '.') + 1;
    if (strcmp(subj, "custom.subject") == 0) {
        respond_text(req, "custom");
    } else if (strcmp(tool, "echo") == 0) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s%}", "key",
                              hdr(req, "Agentq-Idempotency-Key"), "task",
                              hdr(req, "Agentq-Task-Id"), "tenant", hdr(req, "Agentq-Tenant"),
                              "step", hdr(req, "Agentq-Step"), "deadline",
                              hdr(req, "Agentq-Deadline"), "input", natsMsg_GetData(req),
                              (size_t)natsMsg_GetDataLength(req));
        char *text = json_dumps(o, JSON_COMPACT);
        json_t *reply = json_pack("{s:s}", "content", text);
        char *body = json_dumps(reply, JSON_COMPACT);
        respond_text(req, body);
        free(body);
        free(text);
        json_decref(reply);
        json_decref(o);
    } else if (strcmp(tool, "drop_first") == 0) {
        pthread_mutex_lock(&F.lock);
        int n = F.seen_drop_first++;
        if (n < 8)
            snprintf(F.keys[n], sizeof(F.keys[n]), "%s", hdr(req, "Agentq-Idempotency-Key"));
        pthread_mutex_unlock(&F.lock);
        if (n > 0) /* the first request gets no answer: the caller times out and retries */
            respond_text(req, "{\"content\":[{\"type\":\"text\",\"text\":\"done\"}]}");
    } else if (strcmp(tool, "bad_utf8") == 0) {
        respond_text(req, "caf\xc3");
    } else if (strcmp(tool, "big") == 0) {
        char body[2048];
        memset(body, 'x', sizeof(body));
        respond(req, body, sizeof(body));
    } else if (strcmp(tool, "permanent") == 0) {
        respond_text(req, "{\"content\":\"the account is closed\",\"is_error\":true,\"permanent\":true}");
    } else if (strcmp(tool, "is_error") == 0) {
        respond_text(req, "{\"content\":\"no such order\",\"is_error\":true}");
    } else if (strcmp(tool, "svc_error") == 0) {
        natsMsg *m = NULL;
        natsMsg_Create(&m, natsMsg_GetReply(req), NULL, NULL, 0);
        natsMsgHeader_Set(m, "Nats-Service-Error", "order service down");
        natsMsgHeader_Set(m, "Nats-Service-Error-Code", "503");
        natsConnection_PublishMsg(F.svc, m);
        natsMsg_Destroy(m);
    } else if (strcmp(tool, "slow") == 0) {
        /* Callbacks of one subscription run one at a time: answer from a
         * thread, so that the calls overlap as real services would. */
        pthread_t t;
        if (pthread_create(&t, NULL, slow_reply, req) == 0) {
            pthread_detach(t);
            return;
        }
    }
    /* "never": no answer at all */
    natsMsg_Destroy(req);
}

static int setup(void **state)
{
    (void)state;
    evthread_use_pthreads();
    pthread_mutex_init(&F.lock, NULL);
    if (aq_test_nats_start(&F.srv, "tooldisp", false) != 0)
        return -1;
    natsStatus s = aq_test_nats_connect(&F.srv, &F.nc);
    if (s != NATS_OK || natsConnection_ConnectTo(&F.svc, F.srv.url) != NATS_OK)
        return -1;
    if (natsConnection_Subscribe(&F.subs[0], F.svc, "agentq.tools.*", on_request, NULL) != NATS_OK ||
        natsConnection_Subscribe(&F.subs[1], F.svc, "custom.subject", on_request, NULL) != NATS_OK ||
        natsConnection_Flush(F.svc) != NATS_OK)
        return -1;
    F.base = event_base_new();
    if (!F.base || aq_mailbox_new(F.base, &F.mb, NULL) != AQ_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    aq_mailbox_destroy(F.mb);
    event_base_free(F.base);
    for (int i = 0; i < 2; i++)
        natsSubscription_Destroy(F.subs[i]);
    natsConnection_Destroy(F.svc);
    natsConnection_Destroy(F.nc);
    aq_test_nats_stop(&F.srv);
    nats_Close();
    return 0;
}

/* ---- calls ---- */

static int done_count, want_count;

static void on_done(aq_tool_call *c)
{
    (void)c;
    if (++done_count == want_count)
        event_base_loopbreak(F.base);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void run_until(int want)
{
    want_count = want;
    struct event *guard = evtimer_new(F.base, on_guard, F.base);
    struct timeval tv = {20, 0};
    evtimer_add(guard, &tv);
    if (done_count < want_count)
        event_base_dispatch(F.base);
    event_free(guard);
    assert_int_equal(done_count, want);
}

static aq_tool_dispatcher *dispatcher(const char *subjects)
{
    aq_tool_config cfg = {.subject_prefix = "agentq.tools", .subjects = (char *)subjects,
                          .timeout_ms = TIMEOUT_MS, .max_attempts = 3, .max_reply_bytes = 1024,
                          .failure_action = "model"};
    aq_tool_dispatcher *d = NULL;
    aq_err err = {0};
    if (aq_tool_dispatcher_new(F.nc, &cfg, F.base, F.mb, &d, &err) != AQ_OK)
        fail_msg("dispatcher: %s", err.msg);
    return d;
}

static void call_init(aq_tool_call *c, const char *name, const char *input, const char *key)
{
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->input = input;
    c->input_len = strlen(input);
    c->idempotency_key = key;
    c->task_id = "task-1";
    c->tenant = "acme";
    c->step = 2;
    c->done = on_done;
}

/* Run one call to completion. */
static void call_one(aq_tool_dispatcher *d, aq_tool_call *c)
{
    aq_err err = {0};
    done_count = 0;
    if (aq_tool_call_start(d, c, &err) != AQ_OK)
        fail_msg("start: %s", err.msg);
    assert_int_equal(done_count, 0); /* never inside start */
    run_until(1);
}

static void test_headers_and_content(void **state)
{
    (void)state;
    aq_tool_dispatcher *d = dispatcher("");
    aq_tool_call c;
    call_init(&c, "echo", "{\"city\":\"Paris\"}", "task-1:toolu_01");
    int64_t before = aq_now_unix_ms();
    call_one(d, &c);
    assert_int_equal(c.outcome, AQ_TOOL_OK);
    assert_false(c.is_error);
    assert_int_equal(c.attempts, 1);
    /* content is a JSON string holding what the service saw */
    json_error_t jerr;
    json_t *s = json_loads(c.content_json, JSON_DECODE_ANY, &jerr);
    assert_true(json_is_string(s));
    json_t *seen = json_loads(json_string_value(s), 0, &jerr);
    assert_non_null(seen);
    assert_string_equal(json_string_value(json_object_get(seen, "key")), "task-1:toolu_01");
    assert_string_equal(json_string_value(json_object_get(seen, "task")), "task-1");
    assert_string_equal(json_string_value(json_object_get(seen, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(seen, "step")), "2");
    assert_string_equal(json_string_value(json_object_get(seen, "input")), "{\"city\":\"Paris\"}");
    long long deadline = atoll(json_string_value(json_object_get(seen, "deadline")));
    assert_true(deadline >= before + TIMEOUT_MS && deadline <= aq_now_unix_ms() + TIMEOUT_MS);
    json_decref(seen);
    json_decref(s);
    aq_tool_call_clear(&c);

    /* the task's deadline caps the attempt's */
    call_init(&c, "echo", "{}", "task-1:toolu_02");
    c.deadline_unix_ms = aq_now_unix_ms() + 150;
    call_one(d, &c);
    assert_int_equal(c.outcome, AQ_TOOL_OK);
    s = json_loads(c.content_json, JSON_DECODE_ANY, &jerr);
    seen = json_loads(json_string_value(s), 0, &jerr);
    assert_int_equal(atoll(json_string_value(json_object_get(seen, "deadline"))),
                     c.deadline_unix_ms);
    json_decref(seen);
    json_decref(s);
    aq_tool_call_clear(&c);

    aq_tool_dispatcher_stats st;
    aq_tool_dispatcher_stats_get(d, &st);
    assert_int_equal(st.started, 2);
    assert_int_equal(st.completed, 2);
    assert_int_equal(st.in_flight, 0);
    aq_tool_dispatcher_destroy(d);
}

static void test_timeout_retry_success(void **state)
{
    (void)state;
    aq_tool_dispatcher *d = dispatcher("");
    aq_tool_call c;
    call_init(&c, "drop_first", "{}", "task-1:toolu_retry");
    call_one(d, &c);
    assert_int_equal(c.outcome, AQ_TOOL_OK);
    assert_int_equal(c.attempts, 2);
    assert_true(c.latency_ms >= TIMEOUT_MS);
    assert_string_equal(c.content_json, "[{\"type\":\"text\",\"text\":\"done\"}]");
    /* both attempts carried the same key */
    assert_int_equal(F.seen_drop_first, 2);
    assert_string_equal(F.keys[0], "task-1:toolu_retry");
    assert_string_equal(F.keys[1], "task-1:toolu_retry");
    aq_tool_call_clear(&c);

    /* never answered: every attempt times out */
    call_init(&c, "never", "{}", "task-1:toolu_never");
    call_one(d, &c);
    assert_int_equal(c.outcome, AQ_TOOL_TIMEOUT);
    assert_true(c.is_error);
    assert_int_equal(c.attempts, 3);
    assert_true(c.latency_ms >= 3 * TIMEOUT_MS);
    assert_int_equal(c.err.status, AQ_TIMEOUT);
    assert_string_equal(c.err.msg,
                        "tool never: no answer within 300 ms on agentq.tools.never (3 attempts)");
    assert_non_null(strstr(c.content_json, "no answer within 300 ms"));
    aq_tool_call_clear(&c);

    /* the task's deadline ends the retries early */
    call_init(&c, "never", "{}", "task-1:toolu_never2");
    c.deadline_unix_ms = aq_now_unix_ms() + 200;
    call_one(d, &c);
    assert_int_equal(c.outcome, AQ_TOOL_TIMEOUT);
    assert_int_equal(c.attempts, 1);
    /* ~200 ms, not 3 x 300 ms + backoff (slack for a loaded machine) */
    assert_true(c.latency_ms >= 190 && c.latency_ms < 2 * TIMEOUT_MS + 100);
    assert_non_null(strstr(c.err.msg, "task deadline"));
    aq_tool_call_clear(&c);

    /* a deadline already past: not sent at all */
    call_init(&c, "echo", "{}", "task-1:toolu_late");
    c.deadline_unix_ms = aq_now_unix_ms() - 1;
    call_one(d, &c);
    assert_int_equal(c.outcome, AQ_TOOL_TIMEOUT);
    assert_int_equal(c.attempts, 0);
    aq_tool_call_clear(&c);
    aq_tool_dispatcher_destroy(d);
}

static void test_no_responders(void **state)
{
    (void)state;
    aq_tool_dispatcher *d = dispatcher("absent=nobody.home");
    aq_tool_call c;
    call_init(&c, "absent", "{}", "task-1:toolu_absent");
    call_one(d, &c);
    assert_int_equal(c.outcome, AQ_TOOL_NO_RESPONDERS);
    assert_true(c.is_error);
    assert_int_equal(c.attempts, 3);
    /* answered by the server at once: the time is the backoff, not timeouts */
    assert_true(c.latency_ms < 3 * TIMEOUT_MS);
    assert_string_equal(c.err.msg, "tool absent: no service listening on nobody.home (3 attempts)");
    aq_tool_call_clear(&c);
    aq_tool_dispatcher_stats st;
    aq_tool_dispatcher_stats_get(d, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.retries, 2);
    aq_tool_dispatcher_destroy(d);
}

static void test_replies(void **state)
{
    (void)state;
    aq_tool_dispatcher *d = dispatcher("renamed=custom.subject");
    char buf[300];
    assert_string_equal(aq_tool_dispatcher_subject(d, "renamed", buf, sizeof(buf)), "custom.subject");
    assert_string_equal(aq_tool_dispatcher_subject(d, "echo", buf, sizeof(buf)), "agentq.tools.echo");
    assert_null(aq_tool_dispatcher_subject(d, "bad.name", buf, sizeof(buf)));
    struct {
        const char *tool;
        aq_tool_outcome outcome;
        const char *content;
    } cases[] = {
        {"renamed", AQ_TOOL_OK, "\"custom\""},
        {"bad_utf8", AQ_TOOL_BAD_REPLY, "\"tool bad_utf8: bad tool reply: not valid UTF-8\""},
        {"big", AQ_TOOL_BAD_REPLY, "\"tool big: bad tool reply: 2048 bytes, over the cap of 1024\""},
        {"permanent", AQ_TOOL_PERMANENT_FAILURE, "\"the account is closed\""},
        {"is_error", AQ_TOOL_ERROR, "\"no such order\""},
        {"svc_error", AQ_TOOL_ERROR, "\"503: order service down\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_tool_call c;
        call_init(&c, cases[i].tool, "{}", "task-1:toolu_r");
        call_one(d, &c);
        if (c.outcome != cases[i].outcome || strcmp(c.content_json, cases[i].content) != 0)
            fail_msg("%s: %s %s", cases[i].tool, aq_tool_outcome_name(c.outcome), c.content_json);
        assert_int_equal(c.attempts, 1); /* none of these is retried */
        assert_int_equal(c.is_error, cases[i].outcome != AQ_TOOL_OK);
        aq_tool_call_clear(&c);
    }

    /* refused at start: done never runs */
    aq_tool_call c;
    aq_err err = {0};
    call_init(&c, "no.dots", "{}", "k");
    assert_int_equal(aq_tool_call_start(d, &c, &err), AQ_INVALID_ARG);
    call_init(&c, "echo", "{}", "");
    assert_int_equal(aq_tool_call_start(d, &c, &err), AQ_INVALID_ARG);
    aq_tool_dispatcher_destroy(d);
}

static void test_parallel(void **state)
{
    (void)state;
    aq_tool_dispatcher *d = dispatcher("");
    aq_tool_call c[PARALLEL + 1];
    char inputs[PARALLEL][32], keys[PARALLEL][32];
    aq_err err = {0};
    done_count = 0;
    int64_t t0 = aq_mono_ms();
    for (int i = 0; i < PARALLEL; i++) {
        snprintf(inputs[i], sizeof(inputs[i]), "{\"i\":%d}", i);
        snprintf(keys[i], sizeof(keys[i]), "task-p:toolu_%d", i);
        call_init(&c[i], "slow", inputs[i], keys[i]);
        assert_int_equal(aq_tool_call_start(d, &c[i], &err), AQ_OK);
    }
    /* one that fails fast among them completes first, on its own */
    call_init(&c[PARALLEL], "permanent", "{}", "task-p:toolu_fast");
    assert_int_equal(aq_tool_call_start(d, &c[PARALLEL], &err), AQ_OK);
    run_until(PARALLEL + 1);
    int64_t took = aq_mono_ms() - t0;
    /* in parallel: about one SLOW_MS, not PARALLEL of them (4 s; slack
     * for a loaded machine) */
    assert_true(took < 10 * SLOW_MS);
    assert_int_equal(c[PARALLEL].outcome, AQ_TOOL_PERMANENT_FAILURE);
    assert_true(c[PARALLEL].latency_ms < SLOW_MS);
    for (int i = 0; i < PARALLEL; i++) {
        char want[64];
        snprintf(want, sizeof(want), "\"slow {\\\"i\\\":%d}\"", i);
        if (c[i].outcome != AQ_TOOL_OK || strcmp(c[i].content_json, want) != 0)
            fail_msg("call %d: %s %s", i, aq_tool_outcome_name(c[i].outcome), c[i].content_json);
        aq_tool_call_clear(&c[i]);
    }
    aq_tool_call_clear(&c[PARALLEL]);
    aq_tool_dispatcher_destroy(d);
}

static void test_cancel_at_destroy(void **state)
{
    (void)state;
    aq_tool_dispatcher *d = dispatcher("");
    aq_tool_call c[3];
    aq_err err = {0};
    done_count = 0;
    want_count = 100;
    for (int i = 0; i < 3; i++) {
        call_init(&c[i], "never", "{}", "task-c:toolu");
        assert_int_equal(aq_tool_call_start(d, &c[i], &err), AQ_OK);
    }
    /* let the first attempts go out */
    struct timeval tv = {0, 50000};
    event_base_loopexit(F.base, &tv);
    event_base_dispatch(F.base);
    assert_int_equal(done_count, 0);
    aq_tool_dispatcher_destroy(d);
    assert_int_equal(done_count, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].outcome, AQ_TOOL_CANCELLED);
        assert_true(c[i].is_error);
        assert_string_equal(c[i].err.msg, "tool never: cancelled (shutting down)");
        aq_tool_call_clear(&c[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_and_content),
        cmocka_unit_test(test_timeout_retry_success),
        cmocka_unit_test(test_no_responders),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_cancel_at_destroy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
