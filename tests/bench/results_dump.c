/* results_dump: read what the worker stored, straight from JetStream.
 *
 *   results_dump --url URL --summary
 *       one line of key=value: the results bucket's stream (results, bytes,
 *       first/last stored time in Unix microseconds: the server's own
 *       timestamps) and the task consumer (max_ack_pending, ack floor and its
 *       time, pending, ack pending, waiting pulls).
 *   results_dump --url URL
 *       every stored result, one TSV line each:
 *       id  status  stored_unix_us  completed_unix_ms  llm_latency_ms  queue_latency_ms  attempts  value_bytes
 *       where stored_unix_us is the server's timestamp of the KV write (read
 *       from the stream with an ordered consumer), i.e. when the result
 *       became durable and visible to a client.
 */
#include <getopt.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentq/v1/result.pb-c.h"

static const char *status_name(Agentq__V1__Status st)
{
    switch (st) {
    case AGENTQ__V1__STATUS__STATUS_COMPLETED: return "COMPLETED";
    case AGENTQ__V1__STATUS__STATUS_FAILED: return "FAILED";
    default: return "UNSPECIFIED";
    }
}

static int summary(jsCtx *js, const char *kv_stream, const char *stream, const char *consumer)
{
    jsStreamInfo *si = NULL;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, kv_stream, NULL, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "results_dump: stream %s: %s (%d)\n", kv_stream, natsStatus_GetText(s), (int)jerr);
        return 3;
    }
    s = js_GetConsumerInfo(&ci, js, stream, consumer, NULL, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "results_dump: consumer %s: %s (%d)\n", consumer, natsStatus_GetText(s), (int)jerr);
        jsStreamInfo_Destroy(si);
        return 3;
    }
    printf("results=%" PRIu64 " bytes=%" PRIu64 " first_stored_us=%" PRId64 " last_stored_us=%" PRId64
           " max_ack_pending=%" PRId64 " ack_floor_stream_seq=%" PRIu64 " ack_floor_us=%" PRId64
           " delivered_stream_seq=%" PRIu64 " pending=%" PRIu64 " ack_pending=%" PRId64 " redelivered=%" PRId64
           " waiting_pulls=%" PRId64 "\n",
           si->State.Msgs, si->State.Bytes, si->State.Msgs ? si->State.FirstTime / 1000 : 0,
           si->State.Msgs ? si->State.LastTime / 1000 : 0, ci->Config->MaxAckPending, ci->AckFloor.Stream,
           ci->AckFloor.Last / 1000, ci->Delivered.Stream, ci->NumPending, ci->NumAckPending,
           ci->NumRedelivered, ci->NumWaiting);
    jsConsumerInfo_Destroy(ci);
    jsStreamInfo_Destroy(si);
    return 0;
}

static int dump(jsCtx *js, const char *kv_stream, const char *bucket)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, kv_stream, NULL, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "results_dump: stream %s: %s\n", kv_stream, natsStatus_GetText(s));
        return 3;
    }
    uint64_t total = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (total == 0)
        return 0;

    char subject[300];
    snprintf(subject, sizeof(subject), "$KV.%s.>", bucket);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = kv_stream;
    so.Ordered = true;
    natsSubscription *sub = NULL;
    if ((s = js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr)) != NATS_OK) {
        fprintf(stderr, "results_dump: subscribe: %s\n", natsStatus_GetText(s));
        return 3;
    }
    size_t prefix = strlen(subject) - 1;
    int rc = 0;
    for (;;) {
        natsMsg *m = NULL;
        if ((s = natsSubscription_NextMsg(&m, sub, 5000)) != NATS_OK) {
            fprintf(stderr, "results_dump: next: %s\n", natsStatus_GetText(s));
            rc = 1;
            break;
        }
        jsMsgMetaData *md = NULL;
        if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
            natsMsg_Destroy(m);
            rc = 1;
            break;
        }
        const char *op = NULL;
        Agentq__V1__Result *r = NULL;
        if (natsMsgHeader_Get(m, "KV-Operation", &op) != NATS_OK)
            r = agentq__v1__result__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                           (const uint8_t *)natsMsg_GetData(m));
        if (r)
            printf("%s\t%s\t%" PRId64 "\t%" PRId64 "\t%" PRIu64 "\t%" PRIu64 "\t%u\t%d\n",
                   natsMsg_GetSubject(m) + prefix, status_name(r->status), md->Timestamp / 1000,
                   r->completed_unix_ms, r->llm_latency_ms, r->queue_latency_ms, r->attempts,
                   natsMsg_GetDataLength(m));
        else if (!op)
            fprintf(stderr, "results_dump: %s: not a Result\n", natsMsg_GetSubject(m) + prefix);
        agentq__v1__result__free_unpacked(r, NULL);
        bool last = md->NumPending == 0;
        jsMsgMetaData_Destroy(md);
        natsMsg_Destroy(m);
        if (last)
            break;
    }
    natsSubscription_Destroy(sub);
    return rc;
}

int main(int argc, char **argv)
{
    const char *url = "nats://127.0.0.1:4222", *bucket = "agentq-results", *stream = "AGENTQ_TASKS",
               *consumer = "agentq-workers";
    bool want_summary = false;
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},      {"bucket", required_argument, NULL, 'b'},
        {"stream", required_argument, NULL, 's'},   {"consumer", required_argument, NULL, 'c'},
        {"summary", no_argument, NULL, 'S'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u': url = optarg; break;
        case 'b': bucket = optarg; break;
        case 's': stream = optarg; break;
        case 'c': consumer = optarg; break;
        case 'S': want_summary = true; break;
        default:
            fprintf(stderr, "usage: results_dump --url URL [--summary] [--bucket B] [--stream S] [--consumer C]\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, NULL);
    if (s != NATS_OK) {
        fprintf(stderr, "results_dump: cannot connect to %s: %s\n", url, natsStatus_GetText(s));
        return 3;
    }
    char kv_stream[300];
    snprintf(kv_stream, sizeof(kv_stream), "KV_%s", bucket);
    int rc = want_summary ? summary(js, kv_stream, stream, consumer) : dump(js, kv_stream, bucket);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}
