/* `agentq run show ID`: an agent run's checkpoint (its transcript), with the
 * model, tokens, cost and latency of each step and the outcome of each tool
 * call. `agentq session show ID` (cmd_session.c) prints messages the same way. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_config.h"
#include "agent/agent_json.h"
#include "agent/agent_store.h"
#include "cli.h"
#include "task/task_codec.h"

typedef struct run_config {
    aq_queue_config queue;
    char *runs_bucket;
    int64_t runs_ttl_ms;
    int64_t runs_max_bytes;
    bool json;
} run_config;

const aq_option cli_run_options[] = {
    AQ_QUEUE_OPTIONS(run_config, queue),
    AQ_AGENT_RUNS_OPTIONS(run_config, runs_bucket, runs_ttl_ms, runs_max_bytes),
    {"json", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(run_config, json),
     "print the whole state as one JSON object"},
    AQ_OPTIONS_END,
};

static void print_block(FILE *out, const Agentq__V1__ContentBlock *b, const char *indent)
{
    switch (b->block_case) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        fprintf(out, "%s%s\n", indent, b->text ? b->text->text : "");
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT: {
        const Agentq__V1__MediaSource *src = b->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE
                                                 ? (b->image ? b->image->source : NULL)
                                                 : (b->document ? b->document->source : NULL);
        const char *what = b->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE ? "image" : "document";
        if (src && src->url && *src->url)
            fprintf(out, "%s(%s %s)\n", indent, what, src->url);
        else
            fprintf(out, "%s(%s %s, %zu bytes)\n", indent, what, src ? src->media_type : "",
                    src ? src->data.len : 0);
        break;
    }
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE:
        fprintf(out, "%s-> tool_use %s %s %s\n", indent, b->tool_use->name, b->tool_use->id,
                b->tool_use->input_json);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT: {
        const Agentq__V1__ToolResultBlock *r = b->tool_result;
        fprintf(out, "%s<- tool_result %s%s\n", indent, r->tool_use_id,
                r->is_error ? " (error)" : "");
        char deeper[64];
        snprintf(deeper, sizeof(deeper), "%s   ", indent);
        for (size_t i = 0; i < r->n_content; i++)
            print_block(out, r->content[i], deeper);
        break;
    }
    default:
        fprintf(out, "%s(unknown block)\n", indent);
        break;
    }
}

void cli_print_message(FILE *out, const Agentq__V1__Message *m, const char *indent)
{
    char deeper[64];
    snprintf(deeper, sizeof(deeper), "%s    ", indent);
    fprintf(out, "%s[%s]\n", indent, m->role);
    if (m->n_blocks == 0)
        fprintf(out, "%s%s\n", deeper, m->content);
    for (size_t i = 0; i < m->n_blocks; i++)
        print_block(out, m->blocks[i], deeper);
}

static void print_usage_line(FILE *out, const Agentq__V1__Usage *u, uint64_t cost, uint64_t ms)
{
    Agentq__V1__Usage zero = AGENTQ__V1__USAGE__INIT;
    if (!u)
        u = &zero;
    fprintf(out, "in %u out %u cache-read %u cache-write %u  $%" PRIu64 ".%06" PRIu64 "  %" PRIu64
                 " ms",
            u->input_tokens, u->output_tokens, u->cache_read_input_tokens,
            u->cache_creation_input_tokens, cost / 1000000, cost % 1000000, ms);
}

static void print_run(FILE *out, const Agentq__V1__RunState *s)
{
    fprintf(out, "run %s  %s  steps %zu  tool calls %u  schema violations %u\n", s->task_id,
            aq_run_phase_name(s->phase), s->n_steps, s->tool_calls, s->schema_violations);
    fprintf(out, "total: ");
    print_usage_line(out, s->usage, s->cost_micro_usd, s->llm_latency_ms);
    fprintf(out, "%s\n", s->cost_unknown ? "  (cost unknown for some model)" : "");
    if (*s->session_id)
        fprintf(out, "session %s (%u messages of history)\n", s->session_id, s->history_messages);
    if (*s->ceiling)
        fprintf(out, "ceiling reached: %s\n", s->ceiling);
    if (s->error)
        fprintf(out, "error: %s: %s\n", s->error->class_, s->error->message);
    for (size_t i = 0; i < s->n_steps; i++) {
        const Agentq__V1__StepRecord *st = s->steps[i];
        fprintf(out, "step %u  %s (%s)  ", st->step, st->model,
                *st->route_rule ? st->route_rule : "-");
        print_usage_line(out, st->usage, st->cost_micro_usd, st->latency_ms);
        fprintf(out, "  %s%s%s\n", st->stop_reason, st->cache_hit ? "  cache hit" : "",
                st->final_at_ceiling ? "  final at ceiling" : "");
        for (size_t k = 0; k < st->n_tool_calls; k++) {
            const Agentq__V1__ToolCallRecord *t = st->tool_calls[k];
            fprintf(out, "    tool %s %s  %s  %" PRIu64 " ms  %u attempt%s\n", t->name, t->id,
                    t->outcome, t->latency_ms, t->attempts, t->attempts == 1 ? "" : "s");
        }
    }
    for (size_t k = 0; k < s->n_pending; k++)
        fprintf(out, "    pending tool %s %s  %s\n", s->pending[k]->name, s->pending[k]->id,
                s->pending[k]->done ? s->pending[k]->record->outcome : "no result yet");
    fprintf(out, "transcript:\n");
    for (size_t i = 0; i < s->n_conversation; i++) {
        if (i == s->history_messages && s->history_messages)
            fprintf(out, "  --- (the session's history above, this task below)\n");
        cli_print_message(out, s->conversation[i], "  ");
    }
}

static int run_show(run_config *cfg, const char *id)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    aq_run *r = NULL;
    aq_err err;
    uint64_t rev = 0;
    int rc;
    if (!aq_task_id_valid(id)) {
        cli_error("run show", "'%s' is not a valid task id", id);
        return CLI_USAGE;
    }
    if ((rc = cli_connect(&cfg->queue, &nc, &js)) != CLI_OK)
        goto out;
    aq_status st = aq_run_load(js, cfg->runs_bucket, id, cfg->queue.nats_timeout_ms,
                               (size_t)cfg->runs_max_bytes, &r, &rev, &err);
    if (st == AQ_NOT_FOUND) {
        cli_error("run show", "no run %s in %s (not an agent run, not started, or expired)", id,
                  cfg->runs_bucket);
        rc = CLI_NOT_DONE;
        goto out;
    }
    if (st != AQ_OK) {
        cli_error("run show", "%s", err.msg);
        rc = st == AQ_NOT_FOUND ? CLI_CONNECT : CLI_ERROR;
        goto out;
    }
    if (cfg->json) {
        json_t *o = aq_agent_run_json(aq_run_state(r));
        if (o)
            json_object_set_new(o, "revision", json_integer((json_int_t)rev));
        if (!o || json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
            json_decref(o);
            cli_error("run show", "out of memory");
            rc = CLI_ERROR;
            goto out;
        }
        putchar('\n');
        json_decref(o);
    } else {
        print_run(stdout, aq_run_state(r));
    }
    rc = CLI_OK;
out:
    aq_run_free(r);
    aq_queue_disconnect(nc, js);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    const char *usage = "agentq run show [--json] [options] TASK_ID";
    if (argc < 2 || strcmp(argv[1], "show") != 0) {
        bool help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
        fprintf(help ? stdout : stderr, "usage: %s\n\n  show   an agent run's transcript: "
                "each step's model, tokens, cost, latency and tool calls\n", usage);
        return help ? CLI_OK : CLI_USAGE;
    }
    char name[] = "run show";
    argv[1] = name;
    run_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    int argi, rc = cli_parse(cli_run_options, &cfg, &cfg.queue, argc - 1, argv + 1, usage, &argi);
    if (rc < 0) {
        if (argc - 1 - argi != 1) {
            cli_error("run show", "give one task id");
            rc = CLI_USAGE;
        } else {
            rc = run_show(&cfg, argv[1 + argi]);
        }
    }
    aq_config_free(cli_run_options, &cfg);
    return rc;
}
