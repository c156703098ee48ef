#include "dead_letter.h"

#include <stdio.h>

#include "core/clock.h"
#include "task/task_codec.h"

aq_status aq_dead_letter_msg(const aq_queue_config *q, const aq_dead_letter *dl, natsMsg **out,
                             char *msg_id, size_t msg_id_size, aq_err *err)
{
    char subject[512], num[32];
    natsMsg *m = NULL;
    const char *type = dl->type && aq_task_type_valid(dl->type) ? dl->type : "_invalid";
    snprintf(subject, sizeof(subject), "%s.%s", q->dlq_subjects, type);
    if (natsMsg_Create(&m, subject, NULL, dl->payload, dl->payload_len) != NATS_OK)
        return aq_err_set(err, AQ_NOMEM, "cannot create the dead letter");
    natsMsgHeader_Set(m, "Agentq-Error-Class", aq_status_class(dl->status));
    natsMsgHeader_Set(m, "Agentq-Error", dl->error ? dl->error : "");
    snprintf(num, sizeof(num), "%llu", (unsigned long long)dl->attempts);
    natsMsgHeader_Set(m, "Agentq-Attempts", num);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)dl->stream_seq);
    natsMsgHeader_Set(m, "Agentq-Stream-Seq", num);
    snprintf(num, sizeof(num), "%lld", (long long)aq_now_unix_ms());
    natsMsgHeader_Set(m, "Agentq-Failed-At", num);
    if (dl->task_id)
        natsMsgHeader_Set(m, "Agentq-Task-Id", dl->task_id);
    natsMsgHeader_Set(m, "Agentq-Worker", dl->worker ? dl->worker : "");
    snprintf(msg_id, msg_id_size, "%s-%llu", q->task_stream, (unsigned long long)dl->stream_seq);
    *out = m;
    return AQ_OK;
}
