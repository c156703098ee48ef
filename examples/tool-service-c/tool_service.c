/* A tool service for agentq agent runs in C: nats.c + jansson, nothing of
 * agentq. It serves two tools,
 *   get_weather   on agentq.tools.get_weather   {"city": "Paris", "units": "c"}
 *   lookup_order  on agentq.tools.lookup_order  {"order_id": "A-1001"}
 * and answers the NATS services protocol ($SRV.PING, $SRV.INFO, $SRV.STATS,
 * also .<name> and .<name>.<id>) so `agentq tools ls` finds it (nats.c 3.4
 * has no micro API: the three replies are built here, in the v1 shape).
 *
 * The worker sends the tool input (JSON) with headers Agentq-Idempotency-Key,
 * Agentq-Task-Id, Agentq-Tenant, Agentq-Step, Agentq-Deadline; the reply is
 *   {"content": "text" | [blocks], "is_error": bool, "permanent": bool}
 *
 *   tool_service [--url nats://127.0.0.1:4222] [--prefix agentq.tools]
 *                [--keys FILE]       append every idempotency key seen to FILE
 *                [--delay MS]        answer after MS milliseconds
 *                [--drop-first]      never answer the first request of a key
 *                                    (the caller times out and retries)
 *
 * Prints "ready" once it serves; stops on SIGINT or SIGTERM. */
#include <getopt.h>
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SERVICE_NAME "agentq-example-tools-c"
#define SERVICE_VERSION "1.0.0"
#define N_TOOLS 2
#define MAX_SEEN 100000

typedef struct endpoint {
    const char *name;
    char subject[256];
    json_t *(*handle)(json_t *input); /* returns the reply object */
    /* stats, under lock */
    long long num_requests, num_errors;
    long long processing_ns;
    char last_error[256];
} endpoint;

static json_t *get_weather(json_t *input);
static json_t *lookup_order(json_t *input);

static endpoint tools[N_TOOLS] = {
    {.name = "get_weather", .handle = get_weather},
    {.name = "lookup_order", .handle = lookup_order},
};

static struct {
    natsConnection *nc;
    char id[32];
    char started[32];
    FILE *keys;
    int delay_ms;
    bool drop_first;
    char **seen; /* keys answered or dropped once (--drop-first) */
    size_t n_seen;
    pthread_mutex_t lock;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the tools ---- */

static json_t *error_reply(const char *text)
{
    return json_pack("{s:s, s:b}", "content", text, "is_error", 1);
}

static json_t *get_weather(json_t *input)
{
    const char *city = json_string_value(json_object_get(input, "city"));
    const char *units = json_string_value(json_object_get(input, "units"));
    if (!city)
        return error_reply("get_weather needs a string \"city\"");
    bool f = units && strcmp(units, "f") == 0;
    /* Deterministic: the temperature follows from the name. */
    int c = 5 + (int)(strlen(city) * 3 % 25);
    char text[256];
    snprintf(text, sizeof(text), "%s: %d %s, sunny", city, f ? c * 9 / 5 + 32 : c, f ? "F" : "C");
    return json_pack("{s:s}", "content", text);
}

static json_t *lookup_order(json_t *input)
{
    const char *order = json_string_value(json_object_get(input, "order_id"));
    if (!order)
        return error_reply("lookup_order needs a string \"order_id\"");
    if (strncmp(order, "closed-", 7) == 0)
        /* The tool says the run cannot succeed: the worker fails it. */
        return json_pack("{s:s, s:b, s:b}", "content", "the account of this order is closed",
                         "is_error", 1, "permanent", 1);
    char text[256];
    snprintf(text, sizeof(text), "order %s: shipped, 2 items", order);
    return json_pack("{s:[{s:s, s:s}]}", "content", "type", "text", "text", text);
}

/* ---- requests ---- */

/* --drop-first: true the first time a key is seen. */
static bool first_time(const char *key)
{
    for (size_t i = 0; i < S.n_seen; i++)
        if (strcmp(S.seen[i], key) == 0)
            return false;
    if (S.n_seen < MAX_SEEN) {
        char *copy = strdup(key);
        if (copy)
            S.seen[S.n_seen++] = copy;
    }
    return true;
}

static void on_tool(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    endpoint *ep = closure;
    int64_t t0 = now_ns();
    const char *key = NULL;
    natsMsgHeader_Get(msg, "Agentq-Idempotency-Key", &key);
    bool drop = false;
    pthread_mutex_lock(&S.lock);
    if (S.keys && key) {
        fprintf(S.keys, "%s %s\n", ep->name, key);
        fflush(S.keys);
    }
    if (S.drop_first && key)
        drop = first_time(key);
    pthread_mutex_unlock(&S.lock);
    if (drop)
        goto out;
    if (S.delay_ms > 0)
        usleep((useconds_t)S.delay_ms * 1000);

    json_error_t jerr;
    json_t *input = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, &jerr);
    json_t *reply = json_is_object(input) ? ep->handle(input)
                                          : error_reply("the input is not a JSON object");
    char *body = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    bool is_error = json_is_true(json_object_get(reply, "is_error"));
    if (body)
        natsConnection_PublishString(nc, natsMsg_GetReply(msg), body);
    pthread_mutex_lock(&S.lock);
    ep->num_requests++;
    ep->processing_ns += now_ns() - t0;
    if (is_error) {
        ep->num_errors++;
        snprintf(ep->last_error, sizeof(ep->last_error), "%s",
                 json_string_value(json_object_get(reply, "content")));
    }
    pthread_mutex_unlock(&S.lock);
    free(body);
    json_decref(reply);
    json_decref(input);
out:
    natsMsg_Destroy(msg);
}

/* ---- the services protocol ---- */

static json_t *identity(const char *type)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:{}}", "type", type, "name", SERVICE_NAME, "id", S.id,
                     "version", SERVICE_VERSION, "metadata");
}

static void on_srv(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    const char *verb = closure;
    json_t *r = NULL;
    if (strcmp(verb, "PING") == 0) {
        r = identity("io.nats.micro.v1.ping_response");
    } else if (strcmp(verb, "INFO") == 0) {
        r = identity("io.nats.micro.v1.info_response");
        json_object_set_new(r, "description", json_string("agentq example tools in C: weather and orders"));
        json_t *eps = json_array();
        for (int i = 0; i < N_TOOLS; i++)
            json_array_append_new(eps, json_pack("{s:s, s:s, s:s}", "name", tools[i].name,
                                                 "subject", tools[i].subject, "queue_group", "q"));
        json_object_set_new(r, "endpoints", eps);
    } else {
        r = identity("io.nats.micro.v1.stats_response");
        json_object_set_new(r, "started", json_string(S.started));
        json_t *eps = json_array();
        pthread_mutex_lock(&S.lock);
        for (int i = 0; i < N_TOOLS; i++) {
            endpoint *ep = &tools[i];
            long long avg = ep->num_requests ? ep->processing_ns / ep->num_requests : 0;
            json_array_append_new(
                eps, json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I}", "name", ep->name,
                               "subject", ep->subject, "queue_group", "q", "num_requests",
                               (json_int_t)ep->num_requests, "num_errors",
                               (json_int_t)ep->num_errors, "last_error", ep->last_error,
                               "processing_time", (json_int_t)ep->processing_ns,
                               "average_processing_time", (json_int_t)avg));
        }
        pthread_mutex_unlock(&S.lock);
        json_object_set_new(r, "endpoints", eps);
    }
    char *body = r ? json_dumps(r, JSON_COMPACT) : NULL;
    if (body)
        natsConnection_PublishString(nc, natsMsg_GetReply(msg), body);
    free(body);
    json_decref(r);
    natsMsg_Destroy(msg);
}

int main(int argc, char **argv)
{
    const char *url = "nats://127.0.0.1:4222", *prefix = "agentq.tools", *keys = NULL;
    static const struct option long_opts[] = {
        {"url", required_argument, NULL, 'u'},    {"prefix", required_argument, NULL, 'p'},
        {"keys", required_argument, NULL, 'k'},   {"delay", required_argument, NULL, 'd'},
        {"drop-first", no_argument, NULL, 'f'},   {NULL, 0, NULL, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", long_opts, NULL)) != -1;) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'p': prefix = optarg; break;
        case 'k': keys = optarg; break;
        case 'd': S.delay_ms = atoi(optarg); break;
        case 'f': S.drop_first = true; break;
        default:
            fprintf(stderr, "usage: %s [--url URL] [--prefix P] [--keys FILE] [--delay MS] "
                            "[--drop-first]\n", argv[0]);
            return 2;
        }
    }
    if (keys && !(S.keys = fopen(keys, "a"))) {
        perror(keys);
        return 1;
    }
    S.seen = calloc(MAX_SEEN, sizeof(char *));
    time_t t = time(NULL);
    strftime(S.started, sizeof(S.started), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    natsInbox *inbox = NULL; /* a unique id: the inbox's last token (a NUID) */
    natsInbox_Create(&inbox);
    snprintf(S.id, sizeof(S.id), "%s", strrchr((const char *)inbox, '.') + 1);
    natsInbox_Destroy(inbox);

    natsSubscription *subs[N_TOOLS + 9] = {0};
    int n = 0, rc = 1;
    if (natsConnection_ConnectTo(&S.nc, url) != NATS_OK) {
        fprintf(stderr, "cannot connect to %s\n", url);
        goto out;
    }
    for (int i = 0; i < N_TOOLS; i++) {
        snprintf(tools[i].subject, sizeof(tools[i].subject), "%s.%s", prefix, tools[i].name);
        /* A queue group: several instances share the requests. */
        if (natsConnection_QueueSubscribe(&subs[n++], S.nc, tools[i].subject, "q", on_tool,
                                          &tools[i]) != NATS_OK)
            goto out;
    }
    static const char *verbs[] = {"PING", "INFO", "STATS"};
    for (int v = 0; v < 3; v++) {
        char subj[3][128];
        snprintf(subj[0], sizeof(subj[0]), "$SRV.%s", verbs[v]);
        snprintf(subj[1], sizeof(subj[1]), "$SRV.%s.%s", verbs[v], SERVICE_NAME);
        snprintf(subj[2], sizeof(subj[2]), "$SRV.%s.%s.%s", verbs[v], SERVICE_NAME, S.id);
        for (int k = 0; k < 3; k++)
            if (natsConnection_Subscribe(&subs[n++], S.nc, subj[k], on_srv, (void *)verbs[v]) !=
                NATS_OK)
                goto out;
    }
    if (natsConnection_Flush(S.nc) != NATS_OK)
        goto out;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("ready %s %s\n", SERVICE_NAME, S.id);
    fflush(stdout);
    while (!stop)
        usleep(50000);
    rc = 0;
out:
    for (int i = 0; i < n; i++) {
        natsSubscription_Unsubscribe(subs[i]);
        natsSubscription_Destroy(subs[i]);
    }
    natsConnection_Destroy(S.nc);
    for (size_t i = 0; i < S.n_seen; i++)
        free(S.seen[i]);
    free(S.seen);
    if (S.keys)
        fclose(S.keys);
    nats_CloseAndWait(2000);
    return rc;
}
