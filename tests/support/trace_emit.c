/* trace_emit: drives internal/trace as the worker will, for
 * tests/integration/trace_export.sh.
 *
 *   trace_emit --endpoint URL [--headers H] [--queue N] [--batch N]
 *              [--delay MS] [--flush MS] tree [--traceparent TP] [--tracestate TS]
 *   trace_emit ... flood N
 *
 * tree: one task's spans under the given parent context (or a new trace):
 *   process agentq.tasks.chat (CONSUMER)
 *     ├ agentq.cache lookup (INTERNAL, a miss)
 *     ├ chat claude-haiku-4-5 (CLIENT; a 503 retry and a 429 deferral as
 *     │   events; GenAI request/response/usage attributes)
 *     └ execute_tool get_weather (INTERNAL; GenAI tool attributes)
 * then flushes (--flush ms) and shuts the tracer down.
 * flood: N spans ended as fast as possible; the time that took is measured.
 *
 * Prints one JSON line: the task's trace and span ids (tree), emit_us (flood:
 * the time to start and end the N spans), the figures right after emitting
 * (queue_full_after_emit) and after the shutdown (exported, dropped,
 * queue_full, failures), and flush (the status of the flush). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"
#include "trace/trace.h"

typedef struct opts {
    aq_trace_config trace;
    int64_t flush_ms;
    char *traceparent;
    char *tracestate;
} opts;

#define O opts
static const aq_option table[] = {
    AQ_TRACE_OPTIONS(O, trace),
    {"flush", NULL, AQ_OPT_DURATION, "20s", 0, 600000, offsetof(O, flush_ms), "flush timeout"},
    {"traceparent", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(O, traceparent), "parent"},
    {"tracestate", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(O, tracestate), "tracestate"},
    AQ_OPTIONS_END,
};
#undef O

static void emit_tree(aq_tracer *t, const aq_trace_context *parent, const aq_tracestate *ts,
                      json_t *out)
{
    aq_span task, cache, chat, tool;
    aq_span_start(t, &task, "process agentq.tasks.chat", AQ_SPAN_CONSUMER, parent, ts, 0);
    aq_span_set_str(&task, AQ_ATTR_MESSAGING_SYSTEM, AQ_MESSAGING_SYSTEM_NATS);
    aq_span_set_str(&task, AQ_ATTR_MESSAGING_OPERATION_NAME, "process");
    aq_span_set_str(&task, AQ_ATTR_MESSAGING_OPERATION_TYPE, "process");
    aq_span_set_str(&task, AQ_ATTR_MESSAGING_DESTINATION_NAME, "agentq.tasks.chat");
    aq_span_set_str(&task, AQ_ATTR_MESSAGING_CONSUMER_GROUP_NAME, "agentq-workers");
    aq_span_set_str(&task, AQ_ATTR_MESSAGING_MESSAGE_ID, "task-1");
    aq_span_set_str(&task, AQ_ATTR_TASK_ID, "task-1");
    aq_span_set_str(&task, AQ_ATTR_TASK_TYPE, "chat");
    aq_span_set_str(&task, AQ_ATTR_TENANT, "acme");
    aq_span_set_int(&task, AQ_ATTR_DELIVERY_COUNT, 1);

    aq_span_start(t, &cache, "agentq.cache lookup", AQ_SPAN_INTERNAL, &task.ctx, ts, 0);
    aq_span_set_bool(&cache, AQ_ATTR_CACHE_HIT, false);
    aq_span_end(&cache, 0);

    aq_span_start(t, &chat, "chat claude-haiku-4-5", AQ_SPAN_CLIENT, &task.ctx, ts, 0);
    aq_span_set_str(&chat, AQ_ATTR_GEN_AI_OPERATION_NAME, AQ_GEN_AI_OP_CHAT);
    aq_span_set_str(&chat, AQ_ATTR_GEN_AI_PROVIDER_NAME, AQ_GEN_AI_PROVIDER_ANTHROPIC);
    aq_span_set_str(&chat, AQ_ATTR_GEN_AI_REQUEST_MODEL, "claude-haiku-4-5");
    aq_span_set_int(&chat, AQ_ATTR_GEN_AI_REQUEST_MAX_TOKENS, 256);
    aq_trace_attr retry[] = {AQ_TATTR_INT(AQ_ATTR_HTTP_RESPONSE_STATUS_CODE, 503),
                             AQ_TATTR_INT(AQ_ATTR_ATTEMPT, 1),
                             AQ_TATTR_STR(AQ_ATTR_ERROR_TYPE, "server_error")};
    aq_span_add_event(&chat, AQ_EVENT_RETRY, 0, retry, 3);
    aq_trace_attr defer[] = {AQ_TATTR_INT(AQ_ATTR_HTTP_RESPONSE_STATUS_CODE, 429),
                             AQ_TATTR_INT(AQ_ATTR_RETRY_AFTER_MS, 2000),
                             AQ_TATTR_STR(AQ_ATTR_ERROR_TYPE, "rate_limited")};
    aq_span_add_event(&chat, AQ_EVENT_DEFERRAL, 0, defer, 3);
    aq_span_set_str(&chat, AQ_ATTR_GEN_AI_RESPONSE_ID, "msg_01XFDUDYJgAACzvnptvVoYEL");
    aq_span_set_str(&chat, AQ_ATTR_GEN_AI_RESPONSE_MODEL, "claude-haiku-4-5-20251001");
    const char *finish[] = {"end_turn"};
    aq_span_set_str_array(&chat, AQ_ATTR_GEN_AI_RESPONSE_FINISH_REASONS, finish, 1);
    /* usage: input 100, cache read 2000, cache creation 300 -> 2400 in all */
    aq_span_set_int(&chat, AQ_ATTR_GEN_AI_USAGE_INPUT_TOKENS, 2400);
    aq_span_set_int(&chat, AQ_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, 50);
    aq_span_set_int(&chat, AQ_ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 2000);
    aq_span_set_int(&chat, AQ_ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, 300);
    aq_span_set_double(&chat, AQ_ATTR_COST_USD, 0.00123);
    aq_span_set_status(&chat, AQ_SPAN_STATUS_OK, NULL);
    aq_span_end(&chat, 0);

    aq_span_start(t, &tool, "execute_tool get_weather", AQ_SPAN_INTERNAL, &task.ctx, ts, 0);
    aq_span_set_str(&tool, AQ_ATTR_GEN_AI_OPERATION_NAME, AQ_GEN_AI_OP_EXECUTE_TOOL);
    aq_span_set_str(&tool, AQ_ATTR_GEN_AI_TOOL_NAME, "get_weather");
    aq_span_set_str(&tool, AQ_ATTR_GEN_AI_TOOL_CALL_ID, "toolu_01A09q90qw90lq917835lq9");
    aq_span_set_status(&tool, AQ_SPAN_STATUS_ERROR, "tool timed out");
    aq_span_set_str(&tool, AQ_ATTR_ERROR_TYPE, "timeout");
    aq_span_end(&tool, 0);

    aq_span_set_str(&task, AQ_ATTR_OUTCOME, "completed");
    aq_span_end(&task, 0);

    char tid[2 * AQ_TRACE_ID_SIZE + 1], sid[2 * AQ_SPAN_ID_SIZE + 1];
    aq_trace_hex(task.ctx.trace_id, AQ_TRACE_ID_SIZE, tid);
    aq_trace_hex(task.ctx.span_id, AQ_SPAN_ID_SIZE, sid);
    json_object_set_new(out, "trace_id", json_string(tid));
    json_object_set_new(out, "task_span_id", json_string(sid));
    json_object_set_new(out, "sampled", json_boolean(aq_trace_context_sampled(&task.ctx)));
}

int main(int argc, char **argv)
{
    opts o;
    aq_config_cli cli;
    aq_err err;
    aq_tracer *t = NULL;
    int rc = 1;
    memset(&o, 0, sizeof(o));
    if (aq_config_load(table, &o, argc, argv, &cli, &err) != AQ_OK ||
        aq_trace_config_validate(&o.trace, &err) != AQ_OK) {
        fprintf(stderr, "trace_emit: %s\n", err.msg);
        return 2;
    }
    if (cli.help || cli.print_config) { /* the rows as the worker will show them */
        if (cli.help)
            aq_config_print_help(table, stdout);
        else
            aq_config_print(table, &o, stdout);
        aq_config_free(table, &o);
        return 0;
    }
    const char *mode = cli.argi < argc ? argv[cli.argi] : "tree";
    aq_trace_resource res = {"trace-emit-1", "0.1.0-test"};
    if (aq_tracer_new(&o.trace, &res, &t, &err) != AQ_OK || !t) {
        fprintf(stderr, "trace_emit: %s\n", t ? err.msg : "no trace_endpoint");
        goto out;
    }
    json_t *line = json_object();
    if (strcmp(mode, "tree") == 0) {
        aq_trace_context parent = {0};
        aq_tracestate ts = {0};
        if (*o.traceparent &&
            aq_traceparent_parse(o.traceparent, strlen(o.traceparent), &parent) != AQ_OK)
            fprintf(stderr, "trace_emit: ignoring a malformed traceparent (a new trace)\n");
        if (*o.tracestate)
            (void)aq_tracestate_parse(o.tracestate, strlen(o.tracestate), &ts);
        emit_tree(t, &parent, &ts, line);
    } else if (strcmp(mode, "flood") == 0 && cli.argi + 1 < argc) {
        long n = strtol(argv[cli.argi + 1], NULL, 10);
        int64_t t0 = aq_mono_us();
        for (long i = 0; i < n; i++) {
            aq_span s;
            aq_span_start(t, &s, "flood", AQ_SPAN_INTERNAL, NULL, NULL, 0);
            aq_span_set_int(&s, "i", i);
            aq_span_end(&s, 0);
        }
        json_object_set_new(line, "emit_us", json_integer(aq_mono_us() - t0));
        aq_tracer_stats st;
        aq_tracer_stats_get(t, &st);
        json_object_set_new(line, "queue_full_after_emit", json_integer((json_int_t)st.spans_queue_full));
    } else {
        fprintf(stderr, "usage: trace_emit [options] tree | flood N\n");
        json_decref(line);
        goto out;
    }
    aq_status fst = aq_tracer_flush(t, o.flush_ms);
    json_object_set_new(line, "flush", json_string(aq_status_class(fst)));
    aq_tracer_shutdown(t, 1000);
    aq_tracer_stats st;
    aq_tracer_stats_get(t, &st);
    json_object_set_new(line, "exported", json_integer((json_int_t)st.spans_exported));
    json_object_set_new(line, "dropped", json_integer((json_int_t)st.spans_dropped));
    json_object_set_new(line, "queue_full", json_integer((json_int_t)st.spans_queue_full));
    json_object_set_new(line, "failures", json_integer((json_int_t)st.export_failures));
    char *text = json_dumps(line, JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(line);
    rc = 0;
out:
    aq_tracer_destroy(t);
    aq_config_free(table, &o);
    return rc;
}
