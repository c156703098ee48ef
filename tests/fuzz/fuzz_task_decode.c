/* Fuzz target: the task decoder, what every worker runs on bytes any
 * publisher can put on the stream. aq_task_unpack + aq_task_validate with the
 * default limits, then the JSON view (aq_task_to_json) of anything that
 * decodes.
 *
 * Invariants beyond "no crash, no leak, no UB":
 *  - the statuses are the documented ones (a NUL inside a string refuses
 *    the task before it is decoded: no string is ever read cut short);
 *  - a task that validates survives the JSON round trip that `agentq submit`
 *    uses: its JSON view is accepted by aq_task_json_pack, which packs a task
 *    with the same id and type that decodes and validates again. */
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

#include "task/task_codec.h"
#include "task/task_json.h"

static void check_round_trip(const Agentq__V1__Task *t, json_t *j, const aq_task_limits *lim)
{
    aq_err err;
    aq_task_ref ref;
    aq_buf out;
    aq_err_clear(&err);
    aq_buf_init(&out, lim->max_payload_bytes);
    aq_status st = aq_task_json_pack(j, lim, 1, &out, &ref, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    FUZZ_CHECK(strcmp(ref.id, t->id) == 0);
    FUZZ_CHECK(strcmp(ref.type, t->type) == 0);

    Agentq__V1__Task *t2 = NULL;
    st = aq_task_unpack(out.data, out.len, lim, &t2, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    st = aq_task_validate(t2, lim, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    FUZZ_CHECK(strcmp(t2->prompt, t->prompt) == 0 && strcmp(t2->system, t->system) == 0);
    FUZZ_CHECK(t2->n_messages == t->n_messages && t2->max_tokens == t->max_tokens);
    aq_task_free(t2);
    aq_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aq_task_limits lim;
    aq_err err;
    Agentq__V1__Task *t = NULL;

    aq_task_limits_default(&lim);
    aq_err_clear(&err);
    aq_status st = aq_task_unpack(data, size, &lim, &t, &err);
    if (st != AQ_OK) {
        /* AQ_TASK_INVALID: a string holds a NUL byte, so the bytes hold one. */
        FUZZ_CHECK(st == AQ_TASK_DECODE || st == AQ_TOO_BIG ||
                   (st == AQ_TASK_INVALID && memchr(data, 0, size) != NULL));
        FUZZ_CHECK(err.status == st && t == NULL);
        return 0;
    }
    st = aq_task_validate(t, &lim, &err);
    FUZZ_CHECK(st == AQ_OK || st == AQ_TASK_INVALID || st == AQ_PROMPT_TOO_LARGE);
    FUZZ_CHECK(st == AQ_OK || err.status == st);

    /* The JSON view must cope with any decodable task, valid or not. */
    json_t *j = aq_task_to_json(t);
    FUZZ_CHECK(j != NULL);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    FUZZ_CHECK(text != NULL);
    if (st == AQ_OK)
        check_round_trip(t, j, &lim);

    free(text);
    json_decref(j);
    aq_task_free(t);
    return 0;
}
