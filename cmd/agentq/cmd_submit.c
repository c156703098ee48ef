/* Publishing tasks: one from flags (prompt from --prompt or stdin), or many
 * from a JSONL file, pipelined (publish acks are awaited in bulk). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli.h"
#include "core/buf.h"
#include "queue/queue_conn.h"
#include "core/clock.h"
#include "task/task_codec.h"
#include "task/task_json.h"
#include "tool/tool_schema.h"

#define PROGRESS_EVERY_MS 200
#define LINE_SLACK 65536

typedef struct submit_config {
    aq_queue_config queue;
    char *file;
    char *id;
    char *type;
    char *tenant;
    char *model;
    char *system;
    char *prompt;
    int64_t max_tokens;
    double temperature;
    char *stop;
    int64_t deadline_ms;
    char *cache;
    bool allow_fallback;
    bool wait;
    int64_t timeout_ms;
    bool progress;
    bool quiet;
} submit_config;

#define S submit_config
const aq_option cli_submit_options[] = {
    AQ_QUEUE_OPTIONS(S, queue),
    {"file", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, file),
     "JSONL file of tasks, one JSON object a line ('-' for stdin)"},
    {"id", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, id), "task id (default: a random one)"},
    {"type", NULL, AQ_OPT_STRING, "default", 0, 0, offsetof(S, type),
     "task type (the last subject token; also the default for JSONL lines without one)"},
    {"tenant", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, tenant), "tenant"},
    {"model", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, model), "model (empty: the worker routes)"},
    {"system", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, system), "system prompt"},
    {"prompt", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, prompt),
     "the prompt (default: read from stdin)"},
    {"max_tokens", NULL, AQ_OPT_INT, "0", 0, 1000000, offsetof(S, max_tokens),
     "max_tokens (0: the worker's default)"},
    {"temperature", NULL, AQ_OPT_DOUBLE, "-1", -1, 1, offsetof(S, temperature),
     "temperature 0..1 (-1: unset)"},
    {"stop", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, stop), "one stop sequence"},
    {"deadline", NULL, AQ_OPT_DURATION, "0", 0, 31536000000.0, offsetof(S, deadline_ms),
     "give up if not started within this long (0: never)"},
    {"cache", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(S, cache),
     "cache policy: default (cache only temperature 0), opt-in, bypass or refresh (also the "
     "default for JSONL lines without cache_policy)"},
    {"allow_fallback", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(S, allow_fallback),
     "let the worker answer with its fallback model when the routed one is overloaded (529) "
     "(also the default for JSONL lines without allow_fallback)"},
    {"wait", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(S, wait),
     "wait for the result(s); print them (one task) or a summary (a file)"},
    {"timeout", NULL, AQ_OPT_DURATION, "5m", 0, 86400000, offsetof(S, timeout_ms),
     "with --wait: give up after this long"},
    {"progress", NULL, AQ_OPT_BOOL, "true", 0, 0, offsetof(S, progress),
     "show a progress bar on stderr when it is a terminal"},
    {"quiet", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(S, quiet),
     "do not print submitted ids"},
    AQ_OPTIONS_END,
};

/* Publish-ack bookkeeping; the ack handler runs on a nats.c thread. */
typedef struct submit_state {
    uint64_t acked, duplicates, errors; /* atomics */
} submit_state;

/* The counters are the handler's last act: the main thread closes the
 * connection and exits once they add up, so the message must already be
 * destroyed by then (counting first leaked one message, seen by ASan in
 * integration.deferrals and integration.llm_tls_h2). */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    submit_state *s = closure;
    bool ok = pa != NULL, duplicate = pa && pa->Duplicate;
    if (!ok) {
        const char *id = NULL;
        natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
        fprintf(stderr, "agentq submit: task %s refused: %s\n", id ? id : "?",
                pae && pae->ErrText && pae->Err != NATS_TIMEOUT
                    ? pae->ErrText
                    : aq_queue_status_text(pae ? pae->Err : NATS_ERR));
    }
    natsMsg_Destroy(msg);
    if (duplicate)
        __atomic_fetch_add(&s->duplicates, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(ok ? &s->acked : &s->errors, 1, __ATOMIC_RELEASE);
}

/* Longest wait for ack handlers after js_PublishAsyncComplete (see there). */
#define HANDLER_WAIT_MS 2000

static void random_id(char *out, size_t n)
{
    unsigned char r[12];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        memset(r, 0, sizeof(r));
    size_t k = (size_t)snprintf(out, n, "t-");
    for (size_t i = 0; i < sizeof(r) && k + 2 < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%02x", r[i]);
}

static void progress(size_t sent, size_t total, int64_t start_ms, bool final)
{
    double secs = (double)(aq_mono_ms() - start_ms) / 1000.0;
    double rate = secs > 0 ? (double)sent / secs : 0;
    if (total) {
        int width = 30, fill = (int)((double)width * (double)sent / (double)total);
        fprintf(stderr, "\r[%.*s%*s] %zu/%zu %.0f tasks/s", fill,
                "##############################", width - fill, "", sent, total, rate);
    } else {
        fprintf(stderr, "\r%zu tasks %.0f tasks/s", sent, rate);
    }
    if (final)
        fputc('\n', stderr);
}

/* The publisher's state for one run. */
typedef struct submitter {
    const submit_config *cfg;
    natsConnection *nc;
    jsCtx *js;
    aq_task_limits limits;
    aq_buf packed;
    size_t sent, rejected;
    char **ids;
    size_t n_ids, cap_ids;
    int64_t max_payload;
} submitter;

static int publish_packed(submitter *sb, const aq_task_ref *ref, const char *where)
{
    char subject[512];
    natsMsg *m = NULL;
    if ((int64_t)sb->packed.len > sb->max_payload) {
        cli_error("submit", "%stask %s is %zu bytes: over the limit of %lld (the stream's "
                  "max_msg_size or the server's max_payload)",
                  where, ref->id, sb->packed.len, (long long)sb->max_payload);
        sb->rejected++;
        return -1;
    }
    snprintf(subject, sizeof(subject), "%s.%s", sb->cfg->queue.task_subjects, ref->type);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = ref->id; /* the server drops a repeat within the de-dup window */
    natsStatus s = natsMsg_Create(&m, subject, NULL, sb->packed.data, (int)sb->packed.len);
    if (s == NATS_OK)
        s = js_PublishMsgAsync(sb->js, &m, &po);
    natsMsg_Destroy(m);
    if (s != NATS_OK) {
        cli_error("submit", "%stask %s: %s", where, ref->id, aq_queue_status_text(s));
        sb->rejected++;
        return s == NATS_CONNECTION_CLOSED || s == NATS_NO_SERVER ? -2 : -1;
    }
    sb->sent++;
    if (sb->cfg->wait) {
        if (sb->n_ids == sb->cap_ids) {
            size_t cap = sb->cap_ids ? sb->cap_ids * 2 : 256;
            char **p = realloc(sb->ids, cap * sizeof(*p));
            if (!p)
                return -2;
            sb->ids = p;
            sb->cap_ids = cap;
        }
        sb->ids[sb->n_ids++] = strdup(ref->id);
    }
    return 0;
}

/* The flags' defaults for what a task leaves out. */
static void fill_defaults(const submitter *sb, json_t *obj)
{
    char id[64];
    if (json_is_object(obj) && !json_object_get(obj, "id")) {
        random_id(id, sizeof(id));
        json_object_set_new(obj, "id", json_string(id));
    }
    if (json_is_object(obj) && !json_object_get(obj, "type"))
        json_object_set_new(obj, "type", json_string(sb->cfg->type));
    if (json_is_object(obj) && sb->cfg->cache[0] && !json_object_get(obj, "cache_policy"))
        json_object_set_new(obj, "cache_policy", json_string(sb->cfg->cache));
    if (json_is_object(obj) && sb->cfg->allow_fallback && !json_object_get(obj, "allow_fallback"))
        json_object_set_new(obj, "allow_fallback", json_true());
}

static int submit_one_json(submitter *sb, json_t *obj, const char *where)
{
    aq_err err;
    aq_task_ref ref;
    fill_defaults(sb, obj);
    if (aq_task_json_pack(obj, &sb->limits, aq_now_unix_ms(), &sb->packed, &ref, &err) != AQ_OK) {
        cli_error("submit", "%s%s", where, err.msg);
        sb->rejected++;
        return -1;
    }
    int rc = publish_packed(sb, &ref, where);
    if (rc == 0 && !sb->cfg->quiet && !sb->cfg->file[0])
        printf("%s\n", ref.id);
    return rc;
}

static json_t *task_from_flags(const submit_config *c, aq_buf *stdin_prompt)
{
    json_t *o = json_object();
    if (c->id[0])
        json_object_set_new(o, "id", json_string(c->id));
    json_object_set_new(o, "type", json_string(c->type));
    if (c->tenant[0])
        json_object_set_new(o, "tenant", json_string(c->tenant));
    if (c->model[0])
        json_object_set_new(o, "model", json_string(c->model));
    if (c->system[0])
        json_object_set_new(o, "system", json_string(c->system));
    const char *prompt = c->prompt[0] ? c->prompt : stdin_prompt->data;
    json_object_set_new(o, "prompt", json_string(prompt ? prompt : ""));
    if (c->max_tokens)
        json_object_set_new(o, "max_tokens", json_integer(c->max_tokens));
    if (c->temperature >= 0)
        json_object_set_new(o, "temperature", json_real(c->temperature));
    if (c->stop[0])
        json_object_set_new(o, "stop_sequences", json_pack("[s]", c->stop));
    if (c->deadline_ms)
        json_object_set_new(o, "deadline_unix_ms", json_integer(aq_now_unix_ms() + c->deadline_ms));
    return o;
}

static int submit_file(submitter *sb, FILE *in, bool show_progress, int64_t start_ms)
{
    size_t line_cap = (size_t)sb->cfg->queue.max_msg_size * 2 + LINE_SLACK, lineno = 0;
    char *line = malloc(line_cap);
    char where[64];
    int64_t last = 0;
    int rc = 0;
    if (!line)
        return -2;
    while (fgets(line, (int)line_cap, in)) {
        lineno++;
        size_t n = strlen(line);
        if (n == line_cap - 1 && line[n - 1] != '\n') {
            cli_error("submit",
                      "line %zu: longer than %zu bytes: a task that size is over the stream's "
                      "max_msg_size (%lld bytes) and cannot be queued",
                      lineno, line_cap - 2, (long long)sb->cfg->queue.max_msg_size);
            sb->rejected++;
            int ch;
            while ((ch = fgetc(in)) != EOF && ch != '\n')
                ;
            continue;
        }
        if (strspn(line, " \t\r\n") == n)
            continue;
        json_error_t je;
        json_t *obj = json_loads(line, JSON_REJECT_DUPLICATES, &je);
        snprintf(where, sizeof(where), "line %zu: ", lineno);
        if (!obj) {
            cli_error("submit", "%snot JSON: %s", where, je.text);
            sb->rejected++;
            continue;
        }
        rc = submit_one_json(sb, obj, where);
        json_decref(obj);
        if (rc == -2)
            break;
        int64_t now = aq_mono_ms();
        if (show_progress && now - last >= PROGRESS_EVERY_MS) {
            progress(sb->sent, 0, start_ms, false);
            last = now;
        }
    }
    free(line);
    return rc == -2 ? -2 : 0;
}

int cmd_submit(int argc, char **argv)
{
    submit_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    submitter sb;
    memset(&sb, 0, sizeof(sb));
    submit_state state = {0};
    aq_buf stdin_prompt;
    aq_buf_init(&stdin_prompt, 0);
    FILE *in = NULL;
    json_t *single = NULL;
    Agentq__V1__CachePolicy policy;
    int argi, rc = cli_parse(cli_submit_options, &cfg, &cfg.queue, argc, argv,
                             "agentq submit [--prompt TEXT | --file tasks.jsonl] [options]", &argi);
    if (rc >= 0)
        goto out;
    if (argi < argc) {
        cli_error("submit", "unexpected argument '%s' (prompts go in --prompt or stdin)", argv[argi]);
        rc = CLI_USAGE;
        goto out;
    }
    /* Everything checked before connecting: a bad flag is exit 2 with NATS
     * up or down. */
    if (!aq_task_type_valid(cfg.type)) {
        cli_error("submit", "--type '%s' is not a task type (1-64 of [A-Za-z0-9_-])", cfg.type);
        rc = CLI_USAGE;
        goto out;
    }
    if (cfg.cache[0] && !aq_task_cache_policy_parse(cfg.cache, &policy)) {
        cli_error("submit", "--cache '%s' is not default, opt-in, bypass or refresh", cfg.cache);
        rc = CLI_USAGE;
        goto out;
    }
    if (cfg.file[0] && !(in = strcmp(cfg.file, "-") == 0 ? stdin : fopen(cfg.file, "r"))) {
        cli_error("submit", "cannot open %s: %s", cfg.file, strerror(errno));
        rc = CLI_USAGE;
        goto out;
    }
    sb.cfg = &cfg;
    aq_task_limits_default(&sb.limits);
    sb.limits.max_payload_bytes = SIZE_MAX; /* checked against the real limits below */
    sb.limits.check_tool_schema = aq_tool_schema_check; /* refuse a bad tool schema before publishing */
    aq_buf_init(&sb.packed, (size_t)cfg.queue.max_msg_size * 4);
    aq_buf_init(&stdin_prompt, (size_t)cfg.queue.max_msg_size * 4);

    /* One task from flags: the prompt may come from stdin. */
    if (!cfg.file[0]) {
        if (!cfg.prompt[0]) {
            char chunk[65536];
            size_t n;
            while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
                if (aq_buf_append(&stdin_prompt, chunk, n) != AQ_OK) {
                    cli_error("submit",
                              "prompt on stdin is over %zu bytes: a task that size is over the "
                              "stream's max_msg_size (%lld bytes) and cannot be queued",
                              stdin_prompt.cap, (long long)cfg.queue.max_msg_size);
                    rc = CLI_USAGE;
                    goto out;
                }
            }
            if (!stdin_prompt.len) {
                cli_error("submit", "no prompt: give --prompt, a prompt on stdin, or --file");
                rc = CLI_USAGE;
                goto out;
            }
        }
        single = task_from_flags(&cfg, &stdin_prompt);
        aq_task_ref ref;
        aq_err err;
        fill_defaults(&sb, single);
        if (aq_task_json_pack(single, &sb.limits, aq_now_unix_ms(), &sb.packed, &ref, &err) !=
            AQ_OK) {
            cli_error("submit", "%s", err.msg);
            rc = CLI_USAGE;
            goto out;
        }
    }

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if ((rc = cli_connect(&cfg.queue, &nc, NULL)) != CLI_OK)
        goto out;
    /* Our own context: pipelined publishes with a bounded window. */
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = cfg.queue.nats_timeout_ms;
    jo.PublishAsync.MaxPending = 4096; /* pipelined, but bounded */
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = &state;
    if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
        cli_error("submit", "JetStream context: %s", nats_GetLastError(NULL));
        rc = CLI_CONNECT;
        aq_queue_disconnect(nc, NULL);
        goto out;
    }
    sb.nc = nc;
    sb.js = js;
    sb.max_payload = natsConnection_GetMaxPayload(nc);
    if (cfg.queue.max_msg_size < sb.max_payload)
        sb.max_payload = cfg.queue.max_msg_size;

    int64_t start = aq_mono_ms();
    bool is_single = single != NULL;
    bool show = cfg.progress && isatty(STDERR_FILENO) && cfg.file[0];
    int prc;
    if (single)
        prc = submit_one_json(&sb, single, "");
    else
        prc = submit_file(&sb, in, show, start);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = cfg.queue.nats_timeout_ms * 4;
    natsStatus s = js_PublishAsyncComplete(js, &po);
    /* nats.c 3.4.1 counts a publish as complete just before its ack handler
     * runs (on another thread): wait for the handlers too, so the figures
     * below are whole and every message is destroyed (on_ack counts last)
     * before the connection is closed. */
    for (int64_t until = aq_mono_ms() + HANDLER_WAIT_MS;
         s == NATS_OK && aq_mono_ms() < until &&
         __atomic_load_n(&state.acked, __ATOMIC_ACQUIRE) +
                 __atomic_load_n(&state.errors, __ATOMIC_ACQUIRE) <
             (uint64_t)sb.sent;)
        usleep(1000);
    uint64_t acked = __atomic_load_n(&state.acked, __ATOMIC_RELAXED);
    uint64_t dups = __atomic_load_n(&state.duplicates, __ATOMIC_RELAXED);
    uint64_t errs = __atomic_load_n(&state.errors, __ATOMIC_RELAXED);
    if (cfg.file[0]) {
        if (show)
            progress(sb.sent, 0, start, true);
        double secs = (double)(aq_mono_ms() - start) / 1000.0;
        fprintf(stderr,
                "submitted %llu tasks in %.2f s (%.0f tasks/s); %llu duplicates dropped by the "
                "server, %zu rejected, %llu refused by the server\n",
                (unsigned long long)(acked - dups), secs, secs > 0 ? (double)acked / secs : 0.0,
                (unsigned long long)dups, sb.rejected, (unsigned long long)errs);
    } else if (dups) {
        fprintf(stderr, "agentq submit: duplicate id: the server already has this task\n");
    }
    if (s != NATS_OK) {
        cli_error("submit", "not every publish was acknowledged: %s", aq_queue_status_text(s));
        rc = CLI_CONNECT;
    } else if (prc == -2) {
        rc = CLI_CONNECT;
    } else if (sb.rejected || errs) {
        rc = is_single ? CLI_USAGE : CLI_TASK_FAILED;
        if (is_single && errs)
            rc = CLI_ERROR;
    } else if (cfg.wait && sb.n_ids) {
        bool print = !cfg.file[0];
        rc = cli_wait_results(nc, js, &cfg.queue, sb.ids, sb.n_ids, cfg.timeout_ms, print, "submit");
        if (!print)
            fprintf(stderr, "%zu results in %.2f s since the first publish\n", sb.n_ids,
                    (double)(aq_mono_ms() - start) / 1000.0);
    } else {
        rc = CLI_OK;
    }
    aq_queue_disconnect(nc, js);
out:
    json_decref(single);
    if (in && in != stdin)
        fclose(in);
    for (size_t i = 0; i < sb.n_ids; i++)
        free(sb.ids[i]);
    free(sb.ids);
    aq_buf_free(&sb.packed);
    aq_buf_free(&stdin_prompt);
    aq_config_free(cli_submit_options, &cfg);
    return rc;
}
