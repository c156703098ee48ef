#include "sim_stream.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef enum phase {
    PH_START,
    PH_BLOCK_START,
    PH_DELTA,
    PH_BLOCK_STOP,
    PH_MSG_DELTA,
    PH_MSG_STOP,
    PH_DONE,
} phase;

struct aq_sim_stream {
    char *msg_id, *model, *text, *stop_seq;
    size_t model_len, text_len, stop_seq_len;
    bool text_block;      /* block 0 is a text block */
    aq_sim_tool_call *calls; /* their names point into names[], not the request */
    char **names;
    size_t n_calls, n_blocks;
    const char *stop_reason; /* a string literal of the answer */
    int64_t in, out, cache_creation, cache_read;
    size_t chunk_bytes;
    phase ph;
    size_t block, off;
    size_t total_bytes, sent_bytes;
};

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void aq_sim_stream_free(aq_sim_stream *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->calls && i < s->n_calls; i++) {
        free(s->calls[i].input);
        free(s->names ? s->names[i] : NULL);
    }
    free(s->calls);
    free(s->names);
    free(s->msg_id);
    free(s->model);
    free(s->text);
    free(s->stop_seq);
    free(s);
}

aq_status aq_sim_stream_new(const aq_sim_request *r, aq_sim_answer *a, const char *text, size_t text_len,
                            const char *msg_id, int64_t chunk_tokens, aq_sim_stream **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_sim_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    if (chunk_tokens < 1)
        chunk_tokens = 1;
    if (chunk_tokens > AQ_SIM_STREAM_MAX_CHUNK_TOKENS)
        chunk_tokens = AQ_SIM_STREAM_MAX_CHUNK_TOKENS;
    s->chunk_bytes = (size_t)chunk_tokens * 4;
    s->msg_id = dup_n(msg_id, strlen(msg_id));
    s->model = dup_n(r->model.ptr, r->model.len);
    s->model_len = r->model.len;
    s->text = dup_n(text ? text : "", text ? text_len : 0);
    s->text_len = text ? text_len : 0;
    if (a->stop_sequence.ptr) {
        s->stop_seq = dup_n(a->stop_sequence.ptr, a->stop_sequence.len);
        s->stop_seq_len = a->stop_sequence.len;
        if (!s->stop_seq)
            st = AQ_NOMEM;
    }
    if (!s->msg_id || !s->model || !s->text || st != AQ_OK) {
        aq_sim_stream_free(s);
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    }
    /* the blocks of aq_sim_render_message: a text block unless the answer is
     * calls alone, then the calls */
    s->text_block = s->text_len > 0 || a->n_calls == 0;
    s->calls = a->calls;
    s->n_calls = a->n_calls;
    a->calls = NULL;
    a->n_calls = 0;
    if (s->n_calls && !(s->names = calloc(s->n_calls, sizeof(*s->names))))
        st = AQ_NOMEM;
    for (size_t i = 0; st == AQ_OK && i < s->n_calls; i++) {
        aq_sim_text *name = &s->calls[i].name; /* the request's: it is freed before the stream ends */
        if (!(s->names[i] = dup_n(name->ptr, name->len)))
            st = AQ_NOMEM;
        else
            name->ptr = s->names[i];
    }
    if (st != AQ_OK) {
        aq_sim_stream_free(s);
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    }
    s->n_blocks = (s->text_block ? 1 : 0) + s->n_calls;
    s->stop_reason = a->stop_reason;
    s->in = a->input_tokens;
    s->out = a->output_tokens;
    s->cache_creation = a->cache_creation_input_tokens;
    s->cache_read = a->cache_read_input_tokens;
    s->total_bytes = s->text_len;
    for (size_t i = 0; i < s->n_calls; i++)
        s->total_bytes += s->calls[i].input_len;
    s->ph = PH_START;
    *out = s;
    return AQ_OK;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return aq_buf_append(data, buf, size) == AQ_OK ? 0 : -1;
}

/* "event: <name>\ndata: <json>\n\n"; takes the reference to j. */
static aq_status put_event(aq_buf *out, const char *name, json_t *j)
{
    aq_status st = AQ_NOMEM;
    if (!j)
        return AQ_NOMEM; /* json_pack fails only for memory: the texts are valid UTF-8 */
    if (aq_buf_append_str(out, "event: ") == AQ_OK && aq_buf_append_str(out, name) == AQ_OK &&
        aq_buf_append_str(out, "\ndata: ") == AQ_OK && json_dump_callback(j, dump_cb, out, JSON_COMPACT) == 0 &&
        aq_buf_append(out, "\n\n", 2) == AQ_OK)
        st = AQ_OK;
    json_decref(j);
    return st;
}

static json_t *usage_json(const aq_sim_stream *s, int64_t output)
{
    return json_pack("{s:I,s:I,s:I,s:I}", "input_tokens", (json_int_t)s->in, "output_tokens", (json_int_t)output,
                     "cache_creation_input_tokens", (json_int_t)s->cache_creation, "cache_read_input_tokens",
                     (json_int_t)s->cache_read);
}

/* The bytes of block b's delta source: the text, or the call's input JSON. */
static void block_src(const aq_sim_stream *s, size_t b, const char **p, size_t *n)
{
    if (s->text_block && b == 0) {
        *p = s->text;
        *n = s->text_len;
        return;
    }
    const aq_sim_tool_call *c = &s->calls[b - (s->text_block ? 1 : 0)];
    *p = c->input;
    *n = c->input_len;
}

aq_status aq_sim_stream_next(aq_sim_stream *s, aq_buf *out, int64_t *tokens, bool *done)
{
    json_t *j = NULL;
    const char *name = NULL;
    bool is_text = s->text_block && s->block == 0;
    *tokens = 0;
    *done = false;
    switch (s->ph) {
    case PH_START:
        name = "message_start";
        j = json_pack("{s:s,s:{s:s,s:s,s:s,s:s%,s:[],s:n,s:n,s:o}}", "type", "message_start", "message", "id",
                      s->msg_id, "type", "message", "role", "assistant", "model", s->model, s->model_len,
                      "content", "stop_reason", "stop_sequence", "usage", usage_json(s, s->out < 1 ? s->out : 1));
        s->ph = s->n_blocks ? PH_BLOCK_START : PH_MSG_DELTA;
        break;
    case PH_BLOCK_START:
        name = "content_block_start";
        if (is_text) {
            j = json_pack("{s:s,s:I,s:{s:s,s:s}}", "type", "content_block_start", "index", (json_int_t)s->block,
                          "content_block", "type", "text", "text", "");
        } else {
            const aq_sim_tool_call *c = &s->calls[s->block - (s->text_block ? 1 : 0)];
            j = json_pack("{s:s,s:I,s:{s:s,s:s,s:s%,s:{}}}", "type", "content_block_start", "index",
                          (json_int_t)s->block, "content_block", "type", "tool_use", "id", c->id, "name",
                          c->name.ptr, c->name.len, "input");
        }
        s->off = 0;
        s->ph = PH_DELTA;
        break;
    case PH_DELTA: {
        const char *p;
        size_t n;
        block_src(s, s->block, &p, &n);
        if (s->off >= n) { /* nothing (left) to send: the block ends */
            s->ph = PH_BLOCK_STOP;
            return aq_sim_stream_next(s, out, tokens, done);
        }
        size_t take = aq_sim_utf8_cut(p + s->off, n - s->off, s->chunk_bytes);
        if (take == 0) /* cannot happen with chunks of 4+ bytes; never loop */
            take = n - s->off < s->chunk_bytes ? n - s->off : s->chunk_bytes;
        name = "content_block_delta";
        j = is_text ? json_pack("{s:s,s:I,s:{s:s,s:s%}}", "type", "content_block_delta", "index",
                                (json_int_t)s->block, "delta", "type", "text_delta", "text", p + s->off, take)
                    : json_pack("{s:s,s:I,s:{s:s,s:s%}}", "type", "content_block_delta", "index",
                                (json_int_t)s->block, "delta", "type", "input_json_delta", "partial_json",
                                p + s->off, take);
        s->off += take;
        s->sent_bytes += take;
        *tokens = aq_sim_tokens(take);
        break;
    }
    case PH_BLOCK_STOP:
        name = "content_block_stop";
        j = json_pack("{s:s,s:I}", "type", "content_block_stop", "index", (json_int_t)s->block);
        s->block++;
        s->ph = s->block < s->n_blocks ? PH_BLOCK_START : PH_MSG_DELTA;
        break;
    case PH_MSG_DELTA:
        name = "message_delta";
        j = json_pack("{s:s,s:{s:s,s:o},s:o}", "type", "message_delta", "delta", "stop_reason", s->stop_reason,
                      "stop_sequence",
                      s->stop_seq ? json_stringn(s->stop_seq, s->stop_seq_len) : json_null(), "usage",
                      usage_json(s, s->out));
        s->ph = PH_MSG_STOP;
        break;
    case PH_MSG_STOP:
        name = "message_stop";
        j = json_pack("{s:s}", "type", "message_stop");
        s->ph = PH_DONE;
        *done = true;
        break;
    case PH_DONE:
        *done = true;
        return AQ_OK;
    }
    return put_event(out, name, j);
}

bool aq_sim_stream_past_half(const aq_sim_stream *s)
{
    return s->sent_bytes * 2 >= s->total_bytes && (s->sent_bytes > 0 || s->ph >= PH_MSG_DELTA);
}

aq_status aq_sim_stream_ping(aq_buf *out)
{
    return put_event(out, "ping", json_pack("{s:s}", "type", "ping"));
}

aq_status aq_sim_stream_error(aq_buf *out, const char *error_type, const char *message)
{
    return put_event(out, "error",
                     json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", error_type, "message", message));
}
