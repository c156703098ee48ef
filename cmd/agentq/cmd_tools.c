/* `agentq tools ls`: the tool services the cluster runs, found through the
 * NATS services protocol. A request on $SRV.PING, $SRV.INFO and $SRV.STATS
 * is answered by every service instance; the replies gathered for --wait
 * are joined by service id and printed: name, id, version, endpoints with
 * their subjects, requests, errors and average processing time.
 *
 * Both shapes of the protocol are read: v1 (info and stats list
 * "endpoints": [{name, subject, num_requests, ...}], nats.go >= 1.23 and
 * examples/tool-service-c) and the earlier one-endpoint shape of nats.go
 * 1.22 (Debian 12's; "subject" and the stats at the top level).
 *
 * `agentq tools call NAME INPUT` calls one tool the way the worker does
 * (tool/tool_dispatch.h: headers, retries, reply decoding; the input first
 * validated against --schema when given) and prints the outcome as JSON. */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "cli.h"
#include "core/clock.h"
#include "core/mailbox.h"
#include "tool/tool_config.h"
#include "tool/tool_dispatch.h"
#include "tool/tool_schema.h"

/* Bounds on what the network can grow here. */
#define MAX_SERVICES 4096
#define MAX_REPLY_BYTES (1024 * 1024)

typedef struct tools_config {
    aq_queue_config queue;
    bool json;
    int64_t wait_ms;
    char *tool_subject_prefix;
} tools_config;

const aq_option cli_tools_options[] = {
    AQ_QUEUE_OPTIONS(tools_config, queue),
    {"json", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(tools_config, json),
     "print one JSON object"},
    {"wait", NULL, AQ_OPT_DURATION, "1s", 10, 60000, offsetof(tools_config, wait_ms),
     "how long to gather the services' replies"},
    {"tool_subject_prefix", "AGENTQ_TOOL_SUBJECT_PREFIX", AQ_OPT_STRING,
     AQ_TOOL_DEFAULT_SUBJECT_PREFIX, 0, 0, offsetof(tools_config, tool_subject_prefix),
     "an endpoint on <prefix>.NAME serves the tool NAME"},
    AQ_OPTIONS_END,
};

/* services: {id: {"name", "id", "version", "description", "endpoints": {name: {...}}}} */

static json_t *service_for(json_t *services, json_t *reply)
{
    const char *id = json_string_value(json_object_get(reply, "id"));
    const char *name = json_string_value(json_object_get(reply, "name"));
    if (!id || !name)
        return NULL;
    json_t *svc = json_object_get(services, id);
    if (!svc) {
        if (json_object_size(services) >= MAX_SERVICES)
            return NULL;
        svc = json_pack("{s:s, s:s, s:s, s:s, s:{}}", "name", name, "id", id, "version", "",
                        "description", "", "endpoints");
        if (!svc || json_object_set_new(services, id, svc) != 0)
            return NULL;
    }
    const char *v = json_string_value(json_object_get(reply, "version"));
    if (v)
        json_object_set_new(svc, "version", json_string(v));
    return svc;
}

static json_t *endpoint_for(json_t *svc, const char *name)
{
    json_t *eps = json_object_get(svc, "endpoints");
    json_t *ep = json_object_get(eps, name);
    if (!ep) {
        ep = json_pack("{s:s, s:s, s:I, s:I, s:I}", "name", name, "subject", "", "num_requests",
                       (json_int_t)0, "num_errors", (json_int_t)0, "average_processing_time_ns",
                       (json_int_t)0);
        if (!ep || json_object_set_new(eps, name, ep) != 0)
            return NULL;
    }
    return ep;
}

static void copy_int(json_t *to, const char *to_key, json_t *from, const char *from_key)
{
    json_t *v = json_object_get(from, from_key);
    if (json_is_integer(v))
        json_object_set_new(to, to_key, json_integer(json_integer_value(v)));
    else if (json_is_real(v))
        json_object_set_new(to, to_key, json_integer((json_int_t)json_real_value(v)));
}

/* One endpoint's fields from an info or stats object. */
static void merge_endpoint(json_t *svc, json_t *e, const char *default_name)
{
    const char *name = json_string_value(json_object_get(e, "name"));
    json_t *ep = endpoint_for(svc, name ? name : default_name);
    if (!ep)
        return;
    const char *subject = json_string_value(json_object_get(e, "subject"));
    if (subject)
        json_object_set_new(ep, "subject", json_string(subject));
    copy_int(ep, "num_requests", e, "num_requests");
    copy_int(ep, "num_errors", e, "num_errors");
    copy_int(ep, "average_processing_time_ns", e, "average_processing_time");
}

static void merge_reply(json_t *services, const char *kind, json_t *reply)
{
    json_t *svc = service_for(services, reply);
    if (!svc)
        return;
    const char *desc = json_string_value(json_object_get(reply, "description"));
    if (desc)
        json_object_set_new(svc, "description", json_string(desc));
    if (strcmp(kind, "ping") == 0)
        return;
    json_t *eps = json_object_get(reply, "endpoints");
    if (json_is_array(eps)) {
        size_t i;
        json_t *e;
        json_array_foreach(eps, i, e)
        {
            if (json_is_object(e) && json_object_size(json_object_get(svc, "endpoints")) < 1024)
                merge_endpoint(svc, e, "default");
        }
    } else if (json_is_string(json_object_get(reply, "subject")) ||
               json_object_get(reply, "num_requests")) {
        /* nats.go 1.22's shape: one endpoint, named after the service */
        merge_endpoint(svc, reply, json_string_value(json_object_get(reply, "name")));
    }
}

static int cmp_services(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c = strcmp(json_string_value(json_object_get(x, "name")),
                   json_string_value(json_object_get(y, "name")));
    return c ? c : strcmp(json_string_value(json_object_get(x, "id")),
                          json_string_value(json_object_get(y, "id")));
}

static int cmp_endpoints(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(x, "name")),
                  json_string_value(json_object_get(y, "name")));
}

/* The tool an endpoint serves: NAME when its subject is <prefix>.NAME. */
static const char *tool_of(const char *subject, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(subject, prefix, n) != 0 || subject[n] != '.' || !subject[n + 1] ||
        strchr(subject + n + 1, '.'))
        return NULL;
    return subject + n + 1;
}

/* services (by id) -> [{service..., "endpoints": [...]}] sorted, with the
 * tool each endpoint serves. */
static json_t *service_list(json_t *services, const char *prefix)
{
    size_t n = json_object_size(services), k = 0;
    json_t **arr = calloc(n ? n : 1, sizeof(*arr));
    json_t *list = json_array();
    if (!arr || !list) {
        free(arr);
        json_decref(list);
        return NULL;
    }
    const char *key;
    json_t *svc;
    json_object_foreach(services, key, svc) arr[k++] = svc;
    qsort(arr, n, sizeof(*arr), cmp_services);
    for (size_t i = 0; i < n; i++) {
        json_t *eps = json_object_get(arr[i], "endpoints");
        size_t m = json_object_size(eps), j = 0;
        json_t **earr = calloc(m ? m : 1, sizeof(*earr));
        json_t *elist = json_array();
        json_t *ep;
        if (earr && elist) {
            json_object_foreach(eps, key, ep) earr[j++] = ep;
            qsort(earr, m, sizeof(*earr), cmp_endpoints);
            for (j = 0; j < m; j++) {
                const char *tool =
                    tool_of(json_string_value(json_object_get(earr[j], "subject")), prefix);
                json_object_set_new(earr[j], "tool", tool ? json_string(tool) : json_null());
                json_array_append(elist, earr[j]);
            }
        }
        free(earr);
        json_t *copy = json_pack("{s:O, s:O, s:O, s:O, s:o}", "name",
                                 json_object_get(arr[i], "name"), "id",
                                 json_object_get(arr[i], "id"), "version",
                                 json_object_get(arr[i], "version"), "description",
                                 json_object_get(arr[i], "description"), "endpoints",
                                 elist ? elist : json_array());
        if (copy)
            json_array_append_new(list, copy);
    }
    free(arr);
    return list;
}

static void print_table(json_t *list)
{
    printf("%-24s %-22s %-8s %-20s %-36s %8s %6s %10s\n", "SERVICE", "ID", "VERSION", "ENDPOINT",
           "SUBJECT", "REQUESTS", "ERRORS", "AVG");
    size_t i, j;
    json_t *svc, *ep;
    json_array_foreach(list, i, svc)
    {
        json_t *eps = json_object_get(svc, "endpoints");
        if (json_array_size(eps) == 0)
            printf("%-24s %-22s %-8s %-20s\n", json_string_value(json_object_get(svc, "name")),
                   json_string_value(json_object_get(svc, "id")),
                   json_string_value(json_object_get(svc, "version")), "-");
        json_array_foreach(eps, j, ep)
        {
            double avg_ms =
                (double)json_integer_value(json_object_get(ep, "average_processing_time_ns")) / 1e6;
            printf("%-24s %-22s %-8s %-20s %-36s %8lld %6lld %8.3fms\n",
                   json_string_value(json_object_get(svc, "name")),
                   json_string_value(json_object_get(svc, "id")),
                   json_string_value(json_object_get(svc, "version")),
                   json_string_value(json_object_get(ep, "name")),
                   json_string_value(json_object_get(ep, "subject")),
                   (long long)json_integer_value(json_object_get(ep, "num_requests")),
                   (long long)json_integer_value(json_object_get(ep, "num_errors")), avg_ms);
        }
    }
}

static int tools_ls(tools_config *cfg)
{
    int rc = CLI_OK;
    natsConnection *nc = NULL;
    natsSubscription *sub = NULL;
    json_t *services = json_object(), *list = NULL;
    natsStatus s;
    static const char *const kinds[] = {"ping", "info", "stats"};
    static const char *const subjects[] = {"$SRV.PING", "$SRV.INFO", "$SRV.STATS"};

    if (!services) {
        cli_error("tools ls", "out of memory");
        rc = CLI_ERROR;
        goto out;
    }
    if ((rc = cli_connect(&cfg->queue, &nc, NULL)) != CLI_OK)
        goto out;
    char box[AQ_QUEUE_INBOX_MAX], wildcard[AQ_QUEUE_INBOX_MAX + 2], reply[AQ_QUEUE_INBOX_MAX + 16];
    aq_err ierr;
    if (aq_queue_inbox_new(nc, box, sizeof(box), &ierr) != AQ_OK) { /* under nats_inbox_prefix */
        cli_error("tools ls", "%s", ierr.msg);
        rc = CLI_ERROR;
        goto out;
    }
    snprintf(wildcard, sizeof(wildcard), "%s.*", box);
    if ((s = natsConnection_SubscribeSync(&sub, nc, wildcard)) != NATS_OK ||
        (s = natsSubscription_SetPendingLimits(sub, 3 * MAX_SERVICES, 3 * MAX_SERVICES * 1024)) !=
            NATS_OK ||
        (s = natsConnection_Flush(nc)) != NATS_OK)
        goto nats_err;
    for (int i = 0; i < 3; i++) {
        snprintf(reply, sizeof(reply), "%s.%s", box, kinds[i]);
        if ((s = natsConnection_PublishRequest(nc, subjects[i], reply, "", 0)) != NATS_OK)
            goto nats_err;
    }
    if ((s = natsConnection_Flush(nc)) != NATS_OK)
        goto nats_err;

    /* Every instance answers: gather until --wait is over. */
    int64_t until = aq_mono_ms() + cfg->wait_ms;
    for (int64_t left; (left = until - aq_mono_ms()) > 0;) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, left);
        if (s == NATS_TIMEOUT)
            break;
        if (s == NATS_NO_RESPONDERS) /* the server's answer to one verb: no service at all */
            continue;
        if (s != NATS_OK)
            goto nats_err;
        const char *subj = natsMsg_GetSubject(m);
        const char *kind = strrchr(subj, '.') + 1;
        json_error_t jerr;
        json_t *r = NULL;
        if (natsMsg_GetDataLength(m) <= MAX_REPLY_BYTES)
            r = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &jerr);
        if (json_is_object(r))
            merge_reply(services, kind, r);
        json_decref(r);
        natsMsg_Destroy(m);
    }

    list = service_list(services, cfg->tool_subject_prefix ? cfg->tool_subject_prefix : "");
    if (!list) {
        cli_error("tools ls", "out of memory");
        rc = CLI_ERROR;
        goto out;
    }
    if (cfg->json) {
        json_t *o = json_pack("{s:O}", "services", list);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    } else if (json_array_size(list)) {
        print_table(list);
    }
    if (json_array_size(list) == 0) {
        cli_error("tools ls", "no service answered on $SRV.PING/INFO/STATS within %lld ms",
                  (long long)cfg->wait_ms);
        rc = CLI_NOT_DONE;
    }
    goto out;
nats_err:
    cli_error("tools ls", "%s", natsStatus_GetText(s));
    rc = CLI_CONNECT;
out:
    json_decref(list);
    json_decref(services);
    natsSubscription_Destroy(sub);
    aq_queue_disconnect(nc, NULL);
    return rc;
}

typedef struct call_config {
    aq_queue_config queue;
    aq_tool_config tool;
    char *schema;
    char *key;
    char *task_id;
    char *tenant;
} call_config;

const aq_option cli_tools_call_options[] = {
    AQ_QUEUE_OPTIONS(call_config, queue),
    AQ_TOOL_OPTIONS(call_config, tool),
    {"schema", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(call_config, schema),
     "validate the input against this JSON Schema first (not dispatched when it violates it)"},
    {"key", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(call_config, key),
     "Agentq-Idempotency-Key (default: cli:<random>)"},
    {"task_id", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(call_config, task_id), "Agentq-Task-Id"},
    {"tenant", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(call_config, tenant), "Agentq-Tenant"},
    AQ_OPTIONS_END,
};

static void on_call_done(aq_tool_call *call)
{
    event_base_loopbreak(call->ctx);
}

static void print_call(const char *name, const aq_tool_call *c, const char *content_json)
{
    json_error_t jerr;
    json_t *content = content_json ? json_loads(content_json, JSON_DECODE_ANY, &jerr) : NULL;
    json_t *o = json_pack("{s:s, s:s, s:b, s:o, s:i, s:I}", "tool", name, "outcome",
                          aq_tool_outcome_name(c->outcome), "is_error", c->is_error, "content",
                          content ? content : json_null(), "attempts", (int)c->attempts,
                          "latency_ms", (json_int_t)c->latency_ms);
    if (o) {
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
    }
    json_decref(o);
}

static int tools_call(call_config *cfg, const char *name, const char *input)
{
    int rc = CLI_OK;
    natsConnection *nc = NULL;
    struct event_base *base = NULL;
    aq_mailbox *mb = NULL;
    aq_tool_dispatcher *d = NULL;
    aq_tool_schema *schema = NULL;
    aq_tool_call call;
    aq_err err;
    char key[64];
    memset(&call, 0, sizeof(call));

    if (aq_tool_config_check(&cfg->tool, &err) != AQ_OK) {
        cli_error("tools call", "%s", err.msg);
        rc = CLI_USAGE;
        goto out;
    }
    if (cfg->schema && *cfg->schema) {
        if (aq_tool_schema_compile(cfg->schema, strlen(cfg->schema), &schema, &err) != AQ_OK) {
            cli_error("tools call", "--schema: %s", err.msg);
            rc = CLI_USAGE;
            goto out;
        }
        if (aq_tool_schema_validate(schema, input, strlen(input), &err) != AQ_OK) {
            /* What the worker hands back to the model: never dispatched. */
            call.outcome = AQ_TOOL_SCHEMA_VIOLATION;
            call.is_error = true;
            json_t *s = json_string(err.msg);
            char *text = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
            print_call(name, &call, text);
            free(text);
            json_decref(s);
            rc = CLI_TASK_FAILED;
            goto out;
        }
    }
    if ((rc = cli_connect(&cfg->queue, &nc, NULL)) != CLI_OK)
        goto out;
    evthread_use_pthreads();
    base = event_base_new();
    if (!base || aq_mailbox_new(base, &mb, &err) != AQ_OK ||
        aq_tool_dispatcher_new(nc, &cfg->tool, base, mb, &d, &err) != AQ_OK) {
        cli_error("tools call", "%s", base ? err.msg : "event_base_new failed");
        rc = CLI_ERROR;
        goto out;
    }
    if (cfg->key && *cfg->key) {
        snprintf(key, sizeof(key), "%.63s", cfg->key);
    } else {
        natsInbox *inbox = NULL; /* a NUID, unique enough for a key */
        natsInbox_Create(&inbox);
        snprintf(key, sizeof(key), "cli:%s", inbox ? strrchr((const char *)inbox, '.') + 1 : "0");
        natsInbox_Destroy(inbox);
    }
    call.name = name;
    call.input = input;
    call.input_len = strlen(input);
    call.idempotency_key = key;
    call.task_id = cfg->task_id && *cfg->task_id ? cfg->task_id : NULL;
    call.tenant = cfg->tenant && *cfg->tenant ? cfg->tenant : NULL;
    call.done = on_call_done;
    call.ctx = base;
    if (aq_tool_call_start(d, &call, &err) != AQ_OK) {
        cli_error("tools call", "%s", err.msg);
        rc = CLI_USAGE;
        goto out;
    }
    event_base_dispatch(base);
    print_call(name, &call, call.content_json);
    rc = call.outcome == AQ_TOOL_OK ? CLI_OK : CLI_TASK_FAILED;
out:
    aq_tool_dispatcher_destroy(d);
    aq_tool_call_clear(&call);
    aq_tool_schema_destroy(schema);
    aq_mailbox_destroy(mb);
    if (base)
        event_base_free(base);
    aq_queue_disconnect(nc, NULL);
    return rc;
}

static void tools_usage(FILE *out)
{
    fprintf(out, "usage: agentq tools ls [--json] [--wait 1s]\n"
                 "       agentq tools call NAME INPUT_JSON [--schema JSON] [--key K] [--tool_timeout 30s]\n\n"
                 "ls    list the tool services (NATS services protocol) with their endpoints and stats\n"
                 "call  call one tool as the worker does and print the outcome as JSON\n"
                 "      (exit 0 when it is ok, 1 otherwise)\n");
}

int cmd_tools(int argc, char **argv)
{
    int rc = CLI_USAGE;
    bool ls = argc >= 2 && strcmp(argv[1], "ls") == 0;
    bool call = argc >= 2 && strcmp(argv[1], "call") == 0;
    if (!ls && !call) {
        bool help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
                                  strcmp(argv[1], "help") == 0);
        tools_usage(help ? stdout : stderr);
        return help ? CLI_OK : CLI_USAGE;
    }
    char name[16];
    snprintf(name, sizeof(name), "tools %s", argv[1]);
    argv[1] = name; /* messages say "agentq tools ls: ..." */
    int argi;
    if (ls) {
        tools_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        rc = cli_parse(cli_tools_options, &cfg, &cfg.queue, argc - 1, argv + 1, "agentq tools ls [--json] [--wait 1s]",
                       &argi);
        if (rc < 0 && argi != argc - 1) {
            cli_error(name, "unexpected argument '%s'", argv[1 + argi]);
            rc = CLI_USAGE;
        }
        if (rc < 0)
            rc = tools_ls(&cfg);
        aq_config_free(cli_tools_options, &cfg);
    } else {
        call_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        rc = cli_parse(cli_tools_call_options, &cfg, &cfg.queue, argc - 1, argv + 1,
                       "agentq tools call NAME INPUT_JSON [options]", &argi);
        if (rc < 0 && argi != argc - 3) {
            cli_error(name, "needs a tool name and its input (JSON)");
            rc = CLI_USAGE;
        }
        if (rc < 0)
            rc = tools_call(&cfg, argv[1 + argi], argv[2 + argi]);
        aq_config_free(cli_tools_call_options, &cfg);
    }
    return rc;
}
