/* tool_recorder: a tool service for the agent chaos test and benchmark B5.
 * Serves every tool on <prefix>.* (queue group "q": instances share the
 * requests) and answers {"content": "<tool> done"} after --delay ms without
 * blocking: requests are queued and a sender thread replies when each is due,
 * so thousands of calls can wait at once (the example tool service sleeps in
 * its handler, one request at a time per tool). Reconnects forever, so it
 * lives through a nats-server restart.
 *
 *   tool_recorder --url URL [--prefix agentq.tools] [--delay MS]
 *                 [--keys FILE]    one line per request:
 *                                  <tool> <idempotency key> <Agentq-Task-Id> <input, compact, keys sorted>
 *                 [--tap SUBJECT --tap-file FILE]
 *                                  count the messages and bytes (payload + headers)
 *                                  published on SUBJECT (e.g. '$KV.agentq-runs.>'),
 *                                  written to FILE as "msgs=N bytes=B" every 200 ms
 *
 * Prints "ready" once it serves; stops on SIGINT or SIGTERM. */
#include <getopt.h>
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct pending {
    struct pending *next;
    int64_t due_ns;
    char *reply;
    char *body;
} pending;

static struct {
    natsConnection *nc;
    FILE *keys;
    int delay_ms;
    size_t prefix_len;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pending *head, *tail;
    int64_t tap_msgs, tap_bytes;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

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

static void on_tool(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    const char *subject = natsMsg_GetSubject(msg), *reply_to = natsMsg_GetReply(msg);
    const char *tool = strlen(subject) > S.prefix_len ? subject + S.prefix_len : subject;
    const char *key = NULL, *task = NULL;
    natsMsgHeader_Get(msg, "Agentq-Idempotency-Key", &key);
    natsMsgHeader_Get(msg, "Agentq-Task-Id", &task);
    json_t *input = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
    char *canon = input ? json_dumps(input, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_t *reply = json_object();
    char text[160];
    snprintf(text, sizeof(text), "%s done", tool);
    json_object_set_new(reply, "content", json_string(text));
    char *body = json_dumps(reply, JSON_COMPACT);
    pthread_mutex_lock(&S.lock);
    if (S.keys) {
        fprintf(S.keys, "%s %s %s %s\n", tool, key ? key : "-", task ? task : "-",
                canon ? canon : "-");
        fflush(S.keys);
    }
    pthread_mutex_unlock(&S.lock);
    if (reply_to && body) {
        if (S.delay_ms <= 0) {
            natsConnection_PublishString(nc, reply_to, body);
        } else {
            pending *p = calloc(1, sizeof(*p));
            char *r = strdup(reply_to);
            if (p && r) {
                p->due_ns = now_ns() + (int64_t)S.delay_ms * 1000000;
                p->reply = r;
                p->body = body;
                body = NULL;
                pthread_mutex_lock(&S.lock);
                /* One delay for all: due times arrive in order, a FIFO is enough. */
                if (S.tail)
                    S.tail->next = p;
                else
                    S.head = p;
                S.tail = p;
                pthread_cond_signal(&S.cond);
                pthread_mutex_unlock(&S.lock);
            } else {
                free(p);
                free(r);
            }
        }
    }
    free(body);
    free(canon);
    json_decref(reply);
    json_decref(input);
    natsMsg_Destroy(msg);
}

static void *sender(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&S.lock);
    while (!stop) {
        pending *p = S.head;
        int64_t now = now_ns();
        if (!p || p->due_ns > now) {
            int64_t wait = p ? p->due_ns - now : 100000000;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + wait;
            ts.tv_sec = t / 1000000000;
            ts.tv_nsec = t % 1000000000;
            pthread_cond_timedwait(&S.cond, &S.lock, &ts);
            continue;
        }
        S.head = p->next;
        if (!S.head)
            S.tail = NULL;
        pthread_mutex_unlock(&S.lock);
        natsConnection_PublishString(S.nc, p->reply, p->body);
        free(p->reply);
        free(p->body);
        free(p);
        pthread_mutex_lock(&S.lock);
    }
    pthread_mutex_unlock(&S.lock);
    return NULL;
}

static void on_tap(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    const char **names = NULL;
    int n = 0;
    int64_t hdr = 0;
    if (natsMsgHeader_Keys(msg, &names, &n) == NATS_OK) {
        for (int i = 0; i < n; i++) {
            const char *v = NULL;
            natsMsgHeader_Get(msg, names[i], &v);
            hdr += (int64_t)strlen(names[i]) + (v ? (int64_t)strlen(v) : 0) + 4;
        }
        free((void *)names);
    }
    pthread_mutex_lock(&S.lock);
    S.tap_msgs++;
    S.tap_bytes += natsMsg_GetDataLength(msg) + hdr;
    pthread_mutex_unlock(&S.lock);
    natsMsg_Destroy(msg);
}

static void write_tap(const char *file)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    pthread_mutex_lock(&S.lock);
    fprintf(f, "msgs=%lld bytes=%lld\n", (long long)S.tap_msgs, (long long)S.tap_bytes);
    pthread_mutex_unlock(&S.lock);
    fclose(f);
    rename(tmp, file);
}

int main(int argc, char **argv)
{
    const char *url = "nats://127.0.0.1:4222", *prefix = "agentq.tools", *keys = NULL;
    const char *tap = NULL, *tap_file = NULL;
    static const struct option long_opts[] = {
        {"url", required_argument, NULL, 'u'},   {"prefix", required_argument, NULL, 'p'},
        {"keys", required_argument, NULL, 'k'},  {"delay", required_argument, NULL, 'd'},
        {"tap", required_argument, NULL, 't'},   {"tap-file", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", long_opts, NULL)) != -1;) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'p': prefix = optarg; break;
        case 'k': keys = optarg; break;
        case 'd': S.delay_ms = atoi(optarg); break;
        case 't': tap = optarg; break;
        case 'f': tap_file = optarg; break;
        default:
            fprintf(stderr, "usage: %s [--url URL] [--prefix P] [--delay MS] [--keys FILE] "
                            "[--tap SUBJECT --tap-file FILE]\n", argv[0]);
            return 2;
        }
    }
    if ((tap == NULL) != (tap_file == NULL)) {
        fprintf(stderr, "tool_recorder: --tap and --tap-file go together\n");
        return 2;
    }
    if (keys && !(S.keys = fopen(keys, "a"))) {
        perror(keys);
        return 1;
    }
    char wildcard[300];
    snprintf(wildcard, sizeof(wildcard), "%s.*", prefix);
    S.prefix_len = strlen(prefix) + 1;

    natsOptions *o = NULL;
    natsSubscription *tools = NULL, *tapsub = NULL;
    pthread_t th;
    bool started = false;
    int rc = 1;
    if (natsOptions_Create(&o) != NATS_OK || natsOptions_SetURL(o, url) != NATS_OK ||
        natsOptions_SetMaxReconnect(o, -1) != NATS_OK ||
        natsOptions_SetReconnectWait(o, 100) != NATS_OK ||
        natsOptions_SetReconnectBufSize(o, 64 * 1024 * 1024) != NATS_OK ||
        natsConnection_Connect(&S.nc, o) != NATS_OK) {
        fprintf(stderr, "tool_recorder: cannot connect to %s\n", url);
        goto out;
    }
    if (natsConnection_QueueSubscribe(&tools, S.nc, wildcard, "q", on_tool, NULL) != NATS_OK ||
        natsSubscription_SetPendingLimits(tools, -1, -1) != NATS_OK)
        goto out;
    if (tap && (natsConnection_Subscribe(&tapsub, S.nc, tap, on_tap, NULL) != NATS_OK ||
                natsSubscription_SetPendingLimits(tapsub, -1, -1) != NATS_OK))
        goto out;
    if (natsConnection_Flush(S.nc) != NATS_OK || pthread_create(&th, NULL, sender, NULL) != 0)
        goto out;
    started = true;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        if (tap_file)
            write_tap(tap_file);
        usleep(200000);
    }
    if (tap_file)
        write_tap(tap_file);
    rc = 0;
out:
    if (started) {
        pthread_mutex_lock(&S.lock);
        stop = 1;
        pthread_cond_signal(&S.cond);
        pthread_mutex_unlock(&S.lock);
        pthread_join(th, NULL);
    }
    natsSubscription_Destroy(tools);
    natsSubscription_Destroy(tapsub);
    natsConnection_Destroy(S.nc);
    natsOptions_Destroy(o);
    for (pending *p = S.head, *next; p; p = next) {
        next = p->next;
        free(p->reply);
        free(p->body);
        free(p);
    }
    if (S.keys)
        fclose(S.keys);
    nats_Close();
    return rc;
}
