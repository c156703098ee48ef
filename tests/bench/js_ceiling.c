/* js_ceiling: the raw JetStream ceiling of the worker's pipeline, with no
 * HTTP and no decoding. Against the objects `agentq init` creates:
 *
 *   1. publish N task-sized messages (the same agentq.v1.Task bytes paced_pub
 *      makes, Nats-Msg-Id = id) to the task stream, pipelined;
 *   2. bind to the durable pull consumer, fetch(batch), and for every task
 *      publish a result-sized value to $KV.<bucket>.<id> with
 *      js_PublishMsgAsync (with the worker's compare-and-set header
 *      Nats-Expected-Last-Subject-Sequence: 0), and ack the task only in that
 *      put's publish-ack handler — what the worker does per task, minus the call.
 *
 * Prints the publish rate, the consume rate (first fetch to last ack,
 * flushed) and this process's CPU per consumed message.
 *
 *   js_ceiling --url nats://127.0.0.1:4222 -n 50000 --batch 256 --result-bytes 500
 */
#include <getopt.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_common.h"

typedef struct ceiling {
    natsMsg **tasks; /* by task index, owned until acked */
    long n;
    long acked, failed;
    pthread_mutex_t lock;
    pthread_cond_t done;
} ceiling;

static long index_of(const char *s)
{
    const char *dash = strrchr(s, '-');
    return dash ? strtol(dash + 1, NULL, 10) : -1;
}

/* nats.c's publish-ack thread: the value is stored, so the task may go. */
static void on_put_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    ceiling *c = closure;
    long i = index_of(natsMsg_GetSubject(msg));
    natsMsg_Destroy(msg);
    if (i < 0 || i >= c->n || !c->tasks[i])
        return;
    if (pa)
        natsMsg_Ack(c->tasks[i], NULL);
    else if (__atomic_fetch_add(&c->failed, 1, __ATOMIC_RELAXED) < 5)
        fprintf(stderr, "js_ceiling: put failed: %s\n",
                pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(pae ? pae->Err : NATS_ERR));
    natsMsg_Destroy(c->tasks[i]);
    c->tasks[i] = NULL;
    pthread_mutex_lock(&c->lock);
    if (++c->acked == c->n)
        pthread_cond_signal(&c->done);
    pthread_mutex_unlock(&c->lock);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: js_ceiling --url URL [-n N] [--batch B] [--result-bytes N] [--prompt-bytes N]\n"
                    "                  [--stream S] [--consumer C] [--bucket B] [--subject S]\n");
}

int main(int argc, char **argv)
{
    const char *url = "nats://127.0.0.1:4222", *stream = "AGENTQ_TASKS", *consumer = "agentq-workers",
               *bucket = "agentq-results";
    long batch = 256, result_bytes = 500;
    ceiling c = {.n = 50000};
    bench_tasks bt = {.subject = "agentq.tasks.bench", .type = "bench", .id_prefix = "c", .model = "",
                      .prompt_min = 100, .prompt_max = 100, .max_tokens_min = 64, .max_tokens_max = 64};
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},      {"count", required_argument, NULL, 'n'},
        {"batch", required_argument, NULL, 'b'},    {"result-bytes", required_argument, NULL, 'r'},
        {"prompt-bytes", required_argument, NULL, 'p'}, {"stream", required_argument, NULL, 's'},
        {"consumer", required_argument, NULL, 'c'}, {"bucket", required_argument, NULL, 'k'},
        {"subject", required_argument, NULL, 'j'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u': url = optarg; break;
        case 'n': c.n = bench_long(optarg, "count"); break;
        case 'b': batch = bench_long(optarg, "batch"); break;
        case 'r': result_bytes = bench_long(optarg, "result-bytes"); break;
        case 'p': bench_range(optarg, "prompt-bytes", &bt.prompt_min, &bt.prompt_max); break;
        case 's': stream = optarg; break;
        case 'c': consumer = optarg; break;
        case 'k': bucket = optarg; break;
        case 'j': bt.subject = optarg; break;
        default: usage(); return ch == 'h' ? 0 : 2;
        }
    }
    if (c.n < 1 || batch < 1 || result_bytes < 1 || optind < argc || !bench_tasks_init(&bt)) {
        usage();
        return 2;
    }
    c.tasks = calloc((size_t)c.n, sizeof(*c.tasks));
    char *value = malloc((size_t)result_bytes);
    if (!c.tasks || !value)
        return 1;
    memset(value, 'r', (size_t)result_bytes);
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.done, NULL);

    natsConnection *nc = NULL;
    jsCtx *pub = NULL, *js = NULL;
    natsSubscription *sub = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 65536;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&pub, nc, &jo);
    if (s != NATS_OK) {
        fprintf(stderr, "js_ceiling: cannot connect to %s: %s\n", url, natsStatus_GetText(s));
        return 3;
    }

    /* 1. the tasks */
    int64_t t0 = bench_mono_us();
    long task_bytes = 0;
    for (long i = 0; i < c.n && s == NATS_OK; i++) {
        natsMsg *m = NULL;
        if ((s = bench_task_msg(&bt, (uint64_t)i, bench_unix_us() / 1000, &m)) != NATS_OK)
            break;
        if (i == 0)
            task_bytes = natsMsg_GetDataLength(m);
        if ((s = js_PublishMsgAsync(pub, &m, NULL)) != NATS_OK)
            natsMsg_Destroy(m);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (s == NATS_OK)
        s = js_PublishAsyncComplete(pub, &po);
    int64_t pub_us = bench_mono_us() - t0;
    if (s != NATS_OK) {
        fprintf(stderr, "js_ceiling: publishing the tasks: %s\n", natsStatus_GetText(s));
        return 1;
    }

    /* 2. fetch, put, ack after the put's ack */
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 1 << 20; /* as the worker: the consumer's MaxAckPending bounds it */
    jo.PublishAsync.AckHandler = on_put_ack;
    jo.PublishAsync.AckHandlerClosure = &c;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Consumer = consumer;
    jsErrCode jerr = 0;
    char filter[256];
    snprintf(filter, sizeof(filter), "%.*s>", (int)(strrchr(bt.subject, '.') - bt.subject + 1), bt.subject);
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK ||
        (s = js_PullSubscribe(&sub, js, filter, consumer, NULL, &so, &jerr)) != NATS_OK) {
        fprintf(stderr, "js_ceiling: binding to %s/%s: %s (%d)\n", stream, consumer, natsStatus_GetText(s),
                (int)jerr);
        return 1;
    }
    double cpu0 = cpu_s();
    t0 = bench_mono_us();
    long fetched = 0;
    char subject[512];
    while (fetched < c.n) {
        natsMsgList list = {0};
        int want = (int)(c.n - fetched < batch ? c.n - fetched : batch);
        s = natsSubscription_Fetch(&list, sub, want, 5000, &jerr);
        if (s != NATS_OK) {
            fprintf(stderr, "js_ceiling: fetch after %ld: %s\n", fetched, natsStatus_GetText(s));
            natsMsgList_Destroy(&list);
            return 1;
        }
        for (int k = 0; k < list.Count; k++) {
            natsMsg *t = list.Msgs[k], *put = NULL;
            const char *id = NULL;
            long i;
            if (natsMsgHeader_Get(t, "Nats-Msg-Id", &id) != NATS_OK || (i = index_of(id)) < 0 || i >= c.n) {
                fprintf(stderr, "js_ceiling: a task without a bench id\n");
                return 1;
            }
            c.tasks[i] = t;
            list.Msgs[k] = NULL;
            fetched++;
            snprintf(subject, sizeof(subject), "$KV.%s.%s", bucket, id);
            if ((s = natsMsg_Create(&put, subject, NULL, value, (int)result_bytes)) != NATS_OK ||
                (s = natsMsgHeader_Set(put, "Nats-Expected-Last-Subject-Sequence", "0")) != NATS_OK ||
                (s = js_PublishMsgAsync(js, &put, NULL)) != NATS_OK) {
                fprintf(stderr, "js_ceiling: put: %s\n", natsStatus_GetText(s));
                return 1;
            }
        }
        natsMsgList_Destroy(&list);
    }
    pthread_mutex_lock(&c.lock);
    while (c.acked < c.n)
        pthread_cond_wait(&c.done, &c.lock);
    pthread_mutex_unlock(&c.lock);
    natsConnection_FlushTimeout(nc, 10000); /* the acks have reached the server */
    int64_t us = bench_mono_us() - t0;
    double cpu = cpu_s() - cpu0;

    printf("js_ceiling: n=%ld publish_s=%.3f publish_rate=%.0f consume_s=%.3f rate=%.0f put_failures=%ld "
           "cpu_us_per_msg=%.1f batch=%ld result_bytes=%ld task_bytes=%ld\n",
           c.n, pub_us / 1e6, (double)c.n * 1e6 / (double)pub_us, us / 1e6, (double)c.n * 1e6 / (double)us,
           c.failed, cpu * 1e6 / (double)c.n, batch, result_bytes, task_bytes);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    jsCtx_Destroy(pub);
    natsConnection_Destroy(nc);
    bench_tasks_free(&bt);
    free(c.tasks);
    free(value);
    return c.failed == 0 ? 0 : 1;
}
