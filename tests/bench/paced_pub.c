/* paced_pub: publish agentq tasks (protobuf agentq.v1.Task, Nats-Msg-Id =
 * id) to JetStream at a fixed rate, or as fast as the server acknowledges
 * (--rate 0), with created_unix_ms set to the moment of publishing.
 *
 * Task i has id "<prefix>-<i>", a prompt of --prompt-bytes bytes and
 * max_tokens from --max-tokens (each N or MIN-MAX, chosen per task by a hash
 * of i, so runs repeat). --log FILE writes "id<TAB>created_unix_us" per task:
 * the exact publish time (the task itself carries it in milliseconds).
 * Publishes are pipelined (js_PublishMsgAsync); the summary counts acks.
 *
 *   paced_pub --url nats://127.0.0.1:4222 --rate 3000 --duration 20 --log created.tsv
 *   paced_pub --url ... --count 50000 --rate 0 --prompt-bytes 400-7600 --max-tokens 64-1024
 */
#include <getopt.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

static int64_t acked, duplicates, failed;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)closure;
    if (pa) {
        __atomic_fetch_add(&acked, 1, __ATOMIC_RELAXED);
        if (pa->Duplicate)
            __atomic_fetch_add(&duplicates, 1, __ATOMIC_RELAXED);
    } else {
        if (__atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED) < 5)
            fprintf(stderr, "paced_pub: publish failed: %s\n",
                    pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(pae ? pae->Err : NATS_ERR));
    }
    natsMsg_Destroy(msg);
}

static void sleep_until_mono_us(int64_t t)
{
    int64_t now = bench_mono_us();
    if (t <= now)
        return;
    struct timespec ts = {(time_t)((t - now) / 1000000), (long)((t - now) % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: paced_pub --url URL (--count N | --duration S) [--rate R (0 = max)] [--subject S]\n"
            "                 [--type T] [--id-prefix P] [--prompt-bytes N|MIN-MAX] [--max-tokens N|MIN-MAX]\n"
            "                 [--model M] [--log FILE] [--no-created]\n");
}

int main(int argc, char **argv)
{
    const char *url = "nats://127.0.0.1:4222", *log_path = NULL;
    long count = -1;
    double rate = 0, duration = 0;
    bool created = true;
    bench_tasks bt = {.subject = "agentq.tasks.bench", .type = "bench", .id_prefix = "p", .model = "",
                      .prompt_min = 100, .prompt_max = 100, .max_tokens_min = 64, .max_tokens_max = 64};
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},          {"count", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},         {"duration", required_argument, NULL, 'd'},
        {"subject", required_argument, NULL, 's'},      {"type", required_argument, NULL, 't'},
        {"id-prefix", required_argument, NULL, 'i'},    {"prompt-bytes", required_argument, NULL, 'p'},
        {"max-tokens", required_argument, NULL, 'x'},   {"model", required_argument, NULL, 'm'},
        {"log", required_argument, NULL, 'l'},          {"no-created", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u': url = optarg; break;
        case 'n': count = bench_long(optarg, "count"); break;
        case 'r': rate = bench_double(optarg, "rate"); break;
        case 'd': duration = bench_double(optarg, "duration"); break;
        case 's': bt.subject = optarg; break;
        case 't': bt.type = optarg; break;
        case 'i': bt.id_prefix = optarg; break;
        case 'p': bench_range(optarg, "prompt-bytes", &bt.prompt_min, &bt.prompt_max); break;
        case 'x': bench_range(optarg, "max-tokens", &bt.max_tokens_min, &bt.max_tokens_max); break;
        case 'm': bt.model = optarg; break;
        case 'l': log_path = optarg; break;
        case 'C': created = false; break;
        default: usage(); return ch == 'h' ? 0 : 2;
        }
    }
    if (count < 0 && rate > 0 && duration > 0)
        count = (long)(rate * duration + 0.5);
    if (count < 0 || optind < argc || bt.max_tokens_min < 1) {
        usage();
        return 2;
    }
    if (!bench_tasks_init(&bt)) {
        fprintf(stderr, "paced_pub: prompt too large or out of memory\n");
        return 2;
    }

    FILE *log = NULL;
    if (log_path && !(log = fopen(log_path, "w"))) {
        fprintf(stderr, "paced_pub: cannot write %s\n", log_path);
        return 2;
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 65536;
    jo.PublishAsync.AckHandler = on_ack;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, &jo);
    if (s != NATS_OK) {
        fprintf(stderr, "paced_pub: cannot connect to %s: %s\n", url, natsStatus_GetText(s));
        return 3;
    }

    int64_t t0 = bench_mono_us(), start_unix_us = bench_unix_us(), max_lag_us = 0;
    for (long i = 0; i < count && s == NATS_OK; i++) {
        if (rate > 0) {
            int64_t due = t0 + (int64_t)((double)i * 1e6 / rate);
            sleep_until_mono_us(due);
            int64_t lag = bench_mono_us() - due;
            if (lag > max_lag_us)
                max_lag_us = lag;
        }
        int64_t now_us = bench_unix_us();
        natsMsg *m = NULL;
        s = bench_task_msg(&bt, (uint64_t)i, created ? now_us / 1000 : 0, &m);
        if (s == NATS_OK && log)
            fprintf(log, "%s-%ld\t%" PRId64 "\n", bt.id_prefix, i, now_us);
        if (s == NATS_OK && (s = js_PublishMsgAsync(js, &m, NULL)) != NATS_OK)
            natsMsg_Destroy(m);
    }
    int64_t sent_us = bench_mono_us() - t0;
    if (s != NATS_OK)
        fprintf(stderr, "paced_pub: publish: %s\n", natsStatus_GetText(s));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    natsStatus sc = js_PublishAsyncComplete(js, &po);
    int64_t done_us = bench_mono_us() - t0;
    if (log)
        fclose(log);

    int64_t a = __atomic_load_n(&acked, __ATOMIC_RELAXED), f = __atomic_load_n(&failed, __ATOMIC_RELAXED);
    printf("paced_pub: published=%ld acked=%" PRId64 " duplicates=%" PRId64 " failed=%" PRId64
           " start_unix_us=%" PRId64 " send_s=%.3f acked_s=%.3f rate_target=%.0f rate=%.0f max_lag_ms=%.1f\n",
           count, a, __atomic_load_n(&duplicates, __ATOMIC_RELAXED), f, start_unix_us, sent_us / 1e6,
           done_us / 1e6, rate, done_us > 0 ? (double)a * 1e6 / (double)done_us : 0.0, max_lag_us / 1e3);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    bench_tasks_free(&bt);
    return s == NATS_OK && sc == NATS_OK && f == 0 && a == count ? 0 : 1;
}
