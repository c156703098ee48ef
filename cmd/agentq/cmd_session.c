/* `agentq session show ID`: a session's stored history, turn by turn (each
 * turn is what one task added: its messages and its run's turns). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_config.h"
#include "agent/agent_json.h"
#include "cli.h"
#include "session/session.h"

typedef struct session_config {
    aq_queue_config queue;
    char *bucket;
    int64_t ttl_ms;
    int64_t max_bytes;
    bool json;
} session_config;

const aq_option cli_session_options[] = {
    AQ_QUEUE_OPTIONS(session_config, queue),
    AQ_AGENT_SESSION_OPTIONS(session_config, bucket, ttl_ms, max_bytes),
    {"json", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(session_config, json),
     "print the session as one JSON object"},
    AQ_OPTIONS_END,
};

static json_t *session_json(const Agentq__V1__Session *s, uint64_t rev)
{
    json_t *o = json_object(), *turns = json_array();
    if (!o || !turns) {
        json_decref(o);
        json_decref(turns);
        return NULL;
    }
    json_object_set_new(o, "session_id", json_string(s->session_id));
    json_object_set_new(o, "revision", json_integer((json_int_t)rev));
    json_object_set_new(o, "created_unix_ms", json_integer(s->created_unix_ms));
    json_object_set_new(o, "updated_unix_ms", json_integer(s->updated_unix_ms));
    json_object_set_new(o, "dropped_turns", json_integer(s->dropped_turns));
    for (size_t i = 0; i < s->n_turns; i++) {
        const Agentq__V1__SessionTurn *t = s->turns[i];
        json_t *tj = json_object(), *msgs = json_array();
        for (size_t k = 0; k < t->n_messages; k++)
            json_array_append_new(msgs, aq_agent_message_json(t->messages[k]));
        json_object_set_new(tj, "task_id", json_string(t->task_id));
        json_object_set_new(tj, "appended_unix_ms", json_integer(t->appended_unix_ms));
        json_object_set_new(tj, "messages", msgs);
        json_array_append_new(turns, tj);
    }
    json_object_set_new(o, "turns", turns);
    return o;
}

static int session_show(session_config *cfg, const char *id)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    Agentq__V1__Session *s = NULL;
    aq_err err;
    uint64_t rev = 0;
    int rc;
    if (aq_session_keys(id, NULL, NULL, &err) != AQ_OK) {
        cli_error("session show", "%s", err.msg);
        return CLI_USAGE;
    }
    if ((rc = cli_connect(&cfg->queue, &nc, &js)) != CLI_OK)
        goto out;
    aq_status st = aq_session_load(js, cfg->bucket, id, cfg->queue.nats_timeout_ms,
                                   (size_t)cfg->max_bytes * 2, &s, &rev, &err);
    if (st == AQ_NOT_FOUND) {
        cli_error("session show", "no session %s in %s (never used, or expired)", id, cfg->bucket);
        rc = CLI_NOT_DONE;
        goto out;
    }
    if (st != AQ_OK) {
        cli_error("session show", "%s", err.msg);
        rc = CLI_ERROR;
        goto out;
    }
    if (cfg->json) {
        json_t *o = session_json(s, rev);
        if (!o || json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
            json_decref(o);
            cli_error("session show", "out of memory");
            rc = CLI_ERROR;
            goto out;
        }
        putchar('\n');
        json_decref(o);
    } else {
        printf("session %s  turns %zu", s->session_id, s->n_turns);
        if (s->dropped_turns)
            printf("  (%u older turns dropped: session_max_bytes)", s->dropped_turns);
        printf("\n");
        for (size_t i = 0; i < s->n_turns; i++) {
            const Agentq__V1__SessionTurn *t = s->turns[i];
            printf("turn %zu  task %s\n", i + 1, t->task_id);
            for (size_t k = 0; k < t->n_messages; k++)
                cli_print_message(stdout, t->messages[k], "  ");
        }
    }
    rc = CLI_OK;
out:
    aq_session_free(s);
    aq_queue_disconnect(nc, js);
    return rc;
}

int cmd_session(int argc, char **argv)
{
    const char *usage = "agentq session show [--json] [options] SESSION_ID";
    if (argc < 2 || strcmp(argv[1], "show") != 0) {
        bool help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
        fprintf(help ? stdout : stderr, "usage: %s\n\n  show   a session's history, turn by turn\n",
                usage);
        return help ? CLI_OK : CLI_USAGE;
    }
    char name[] = "session show";
    argv[1] = name;
    session_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    int argi, rc = cli_parse(cli_session_options, &cfg, &cfg.queue, argc - 1, argv + 1, usage, &argi);
    if (rc < 0) {
        if (argc - 1 - argi != 1) {
            cli_error("session show", "give one session id");
            rc = CLI_USAGE;
        } else {
            rc = session_show(&cfg, argv[1 + argi]);
        }
    }
    aq_config_free(cli_session_options, &cfg);
    return rc;
}
