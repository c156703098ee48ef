/* kvget_bench: reads of a KV key's latest entry per second, synchronous
 * (kvStore_Get, one round trip at a time: what aq_kv_read_now does) against pipelined direct gets (queue_kvget.h) with
 * N requests in flight, in one run so that the ratio is meaningful on a
 * shared machine.
 *
 * Fills a bucket with --keys keys of --value-bytes bytes, then reads keys
 * round-robin: --sync-count synchronous reads, then --count pipelined reads
 * for every in-flight cap of --in-flight. Every read must find its key.
 *
 *   kvget_bench --url nats://127.0.0.1:4222 -n 100000 --in-flight 1,16,64,256,1024
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/mailbox.h"
#include "queue/queue_kvget.h"

#define MAX_CAPS 16

typedef struct run {
    struct event_base *base;
    long done, failed;
    long n;
} run;

static run g_run;

static void on_read(aq_kv_read *r)
{
    if (r->status != AQ_OK && g_run.failed++ < 5)
        fprintf(stderr, "kvget_bench: %s: %s\n", r->key, r->err.msg);
    aq_kv_read_clear(r);
    if (++g_run.done == g_run.n)
        event_base_loopbreak(g_run.base);
}

static void usage(void)
{
    fprintf(stderr, "usage: kvget_bench [--url URL] [-n COUNT] [--sync-count N] [--keys N]\n"
                    "                   [--value-bytes N] [--in-flight N,N,...] [--bucket B] [--send-asap]\n");
}

static void key_of(char *out, size_t n, long i, long keys)
{
    snprintf(out, n, "bench.%ld", i % keys);
}

int main(int argc, char **argv)
{
    const char *url = "nats://127.0.0.1:4222", *bucket = "kvget-bench", *caps_arg = "1,16,64,256,1024";
    long n = 100000, sync_n = 20000, keys = 1000, value_bytes = 500;
    bool send_asap = false;
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},         {"count", required_argument, NULL, 'n'},
        {"sync-count", required_argument, NULL, 's'},  {"keys", required_argument, NULL, 'k'},
        {"value-bytes", required_argument, NULL, 'v'}, {"in-flight", required_argument, NULL, 'f'},
        {"bucket", required_argument, NULL, 'b'},      {"send-asap", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u': url = optarg; break;
        case 'n': n = bench_long(optarg, "count"); break;
        case 's': sync_n = bench_long(optarg, "sync-count"); break;
        case 'k': keys = bench_long(optarg, "keys"); break;
        case 'v': value_bytes = bench_long(optarg, "value-bytes"); break;
        case 'f': caps_arg = optarg; break;
        case 'b': bucket = optarg; break;
        case 'a': send_asap = true; break;
        default: usage(); return ch == 'h' ? 0 : 2;
        }
    }
    long caps[MAX_CAPS];
    int ncaps = 0;
    char caps_buf[256];
    snprintf(caps_buf, sizeof(caps_buf), "%s", caps_arg);
    for (char *save = NULL, *tok = strtok_r(caps_buf, ",", &save); tok && ncaps < MAX_CAPS;
         tok = strtok_r(NULL, ",", &save))
        caps[ncaps++] = bench_long(tok, "in-flight");
    if (n < 1 || sync_n < 1 || keys < 1 || value_bytes < 1 || ncaps == 0 || optind < argc) {
        usage();
        return 2;
    }
    for (int i = 0; i < ncaps; i++)
        if (caps[i] < 1 || caps[i] > AQ_KV_GETTER_MAX_IN_FLIGHT) {
            fprintf(stderr, "kvget_bench: in-flight 1..%d\n", AQ_KV_GETTER_MAX_IN_FLIGHT);
            return 2;
        }

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, url);
    /* nats.c batches a publish with the ones of the next millisecond or so
     * (its flusher thread); a synchronous request flushes at once. */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(no, send_asap);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, no);
    natsOptions_Destroy(no);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, NULL);
    if (s != NATS_OK) {
        fprintf(stderr, "kvget_bench: cannot connect to %s: %s\n", url, natsStatus_GetText(s));
        return 3;
    }
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = bucket;
    kc.History = 1;
    if ((s = js_CreateKeyValue(&kv, js, &kc)) != NATS_OK) {
        fprintf(stderr, "kvget_bench: bucket %s: %s\n", bucket, natsStatus_GetText(s));
        return 3;
    }
    char *value = malloc((size_t)value_bytes);
    if (!value)
        return 1;
    memset(value, 'v', (size_t)value_bytes);
    char key[64];
    for (long i = 0; i < keys && s == NATS_OK; i++) {
        key_of(key, sizeof(key), i, keys);
        s = kvStore_Put(NULL, kv, key, value, (int)value_bytes);
    }
    if (s != NATS_OK) {
        fprintf(stderr, "kvget_bench: put: %s\n", natsStatus_GetText(s));
        return 3;
    }

    /* Synchronous: one round trip at a time. */
    long sync_failed = 0;
    int64_t t0 = bench_mono_us();
    for (long i = 0; i < sync_n; i++) {
        kvEntry *e = NULL;
        key_of(key, sizeof(key), i, keys);
        if (kvStore_Get(&e, kv, key) != NATS_OK)
            sync_failed++;
        kvEntry_Destroy(e);
    }
    double sync_s = (double)(bench_mono_us() - t0) / 1e6;
    double sync_rate = (double)sync_n / sync_s;
    printf("# kvget_bench: %ld keys of %ld bytes, bucket %s, send-asap %s\n", keys, value_bytes,
           bucket, send_asap ? "on" : "off");
    printf("%-28s %9s %9s %12s %7s\n", "mode", "reads", "seconds", "reads/s", "ratio");
    printf("%-28s %9ld %9.2f %12.0f %7.2f\n", "kvStore_Get (sync)", sync_n, sync_s, sync_rate, 1.0);
    fflush(stdout);

    /* Pipelined: all reads handed over at once, `cap` on the wire. */
    evthread_use_pthreads();
    aq_kv_read *reads = calloc((size_t)n, sizeof(*reads));
    if (!reads)
        return 1;
    int rc = sync_failed ? 1 : 0;
    for (int c = 0; c < ncaps; c++) {
        struct event_base *base = event_base_new();
        aq_mailbox *mb = NULL;
        aq_kv_getter *kg = NULL;
        aq_err err = {0};
        aq_kv_getter_config cfg = {.timeout_ms = 10000, .max_in_flight = (int)caps[c],
                                   .max_value_bytes = (size_t)value_bytes};
        if (!base || aq_mailbox_new(base, &mb, &err) != AQ_OK ||
            aq_kv_getter_new(nc, js, bucket, &cfg, base, mb, &kg, &err) != AQ_OK) {
            fprintf(stderr, "kvget_bench: %s\n", err.msg);
            return 3;
        }
        g_run = (run){.base = base, .n = n};
        t0 = bench_mono_us();
        for (long i = 0; i < n; i++) {
            key_of(key, sizeof(key), i, keys);
            aq_kv_getter_get(kg, &reads[i], key, on_read, NULL);
        }
        event_base_dispatch(base);
        double secs = (double)(bench_mono_us() - t0) / 1e6;
        char mode[64];
        snprintf(mode, sizeof(mode), "direct get, %ld in flight", caps[c]);
        printf("%-28s %9ld %9.2f %12.0f %7.2f\n", mode, n, secs, (double)n / secs,
               (double)n / secs / sync_rate);
        fflush(stdout);
        if (g_run.failed)
            rc = 1;
        aq_kv_getter_destroy(kg);
        aq_mailbox_destroy(mb);
        event_base_free(base);
    }
    if (sync_failed)
        fprintf(stderr, "kvget_bench: %ld synchronous reads failed\n", sync_failed);
    free(reads);
    free(value);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
