/* The smallest complete agentq publisher in C: nats.c + protobuf-c and the
 * generated code of schemas/agentq/v1/task.proto, nothing else of agentq.
 *
 *   publish NATS_URL TASK_ID "prompt"
 *
 * Publishes one Task to agentq.tasks.example with Nats-Msg-Id = the task id,
 * then waits for the Result in the KV bucket agentq-results. */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>

#include "agentq/v1/result.pb-c.h"
#include "agentq/v1/task.pb-c.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s NATS_URL TASK_ID PROMPT\n", argv[0]);
        return 2;
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    kvWatcher *w = NULL;
    int rc = 1;

    Agentq__V1__Task task = AGENTQ__V1__TASK__INIT;
    task.id = argv[2];
    task.type = "example";
    task.prompt = argv[3];
    task.max_tokens = 256;
    size_t len = agentq__v1__task__get_packed_size(&task);
    uint8_t *buf = malloc(len);
    agentq__v1__task__pack(&task, buf);

    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = task.id; /* a repeated publish of the same id is dropped */
    jsPubAck *pa = NULL;
    if (natsConnection_ConnectTo(&nc, argv[1]) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK ||
        js_Publish(&pa, js, "agentq.tasks.example", buf, (int)len, &po, NULL) != NATS_OK) {
        fprintf(stderr, "publish failed: %s\n", nats_GetLastError(NULL));
        goto out;
    }
    printf("published %s (stream sequence %llu)\n", task.id, (unsigned long long)pa->Sequence);

    /* The worker stores the Result under the task id. */
    kvEntry *e = NULL;
    if (js_KeyValue(&kv, js, "agentq-results") != NATS_OK ||
        kvStore_Watch(&w, kv, task.id, NULL) != NATS_OK)
        goto out;
    while (kvWatcher_Next(&e, w, 60000) == NATS_OK) {
        if (!e)
            continue; /* end of the initial values */
        Agentq__V1__Result *r = agentq__v1__result__unpack(NULL, (size_t)kvEntry_ValueLen(e),
                                                          kvEntry_Value(e));
        if (r) {
            printf("%s: %s\n", r->status == AGENTQ__V1__STATUS__STATUS_COMPLETED ? "completed" : "failed",
                   r->status == AGENTQ__V1__STATUS__STATUS_COMPLETED ? r->output
                                                                      : r->error->message);
            rc = r->status == AGENTQ__V1__STATUS__STATUS_COMPLETED ? 0 : 1;
            agentq__v1__result__free_unpacked(r, NULL);
        }
        kvEntry_Destroy(e);
        break;
    }
out:
    jsPubAck_Destroy(pa);
    kvWatcher_Destroy(w);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    free(buf);
    return rc;
}
