#include "sim_request.h"

#include "core/text.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

/* ---------------------------------------------------------------- parsing */

#define CACHE_TTL_5M_MS 300000
#define CACHE_TTL_1H_MS 3600000

/* A block's "cache_control": absent, or {"type":"ephemeral"[, "ttl":"5m"|"1h"]}.
 * *ttl_ms = 0 when absent. */
static aq_status check_cache_control(json_t *b, const char *where, size_t i, int64_t *ttl_ms,
                                     aq_err *err)
{
    json_t *cc = json_object_get(b, "cache_control");
    *ttl_ms = 0;
    if (!cc || json_is_null(cc))
        return AQ_OK;
    json_t *type = json_object_get(cc, "type");
    if (!json_is_object(cc) || !json_is_string(type) ||
        strcmp(json_string_value(type), "ephemeral") != 0)
        return aq_err_set(err, AQ_INVALID_ARG,
                          "%s.%zu.cache_control: Input should be {\"type\": \"ephemeral\"}", where, i);
    json_t *ttl = json_object_get(cc, "ttl");
    *ttl_ms = CACHE_TTL_5M_MS;
    if (ttl && !json_is_null(ttl)) {
        const char *t = json_string_value(ttl);
        if (t && strcmp(t, "1h") == 0)
            *ttl_ms = CACHE_TTL_1H_MS;
        else if (!t || strcmp(t, "5m") != 0)
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s.%zu.cache_control.ttl: Input should be '5m' or '1h'", where, i);
    }
    return AQ_OK;
}

/* Validates a "system" value or a message "content": a string, or an array of
 * {"type":"text","text":"..."} blocks. Counts its blocks; *cached (may be
 * NULL) = 1 + the index of the last block with a cache_control mark (0: none)
 * and *ttl_ms that mark's ttl. */
static aq_status check_content(json_t *v, const char *where, size_t *n_blocks, size_t *cached,
                               int64_t *ttl_ms, aq_err *err)
{
    if (json_is_string(v)) {
        *n_blocks = 1;
        return AQ_OK;
    }
    if (!json_is_array(v))
        return aq_err_set(err, AQ_INVALID_ARG,
                          "%s: Input should be a valid string or a list of text blocks", where);
    size_t n = json_array_size(v);
    if (n > AQ_SIM_MAX_BLOCKS_PER_CONTENT)
        return aq_err_set(err, AQ_INVALID_ARG, "%s: more than %d content blocks", where,
                          AQ_SIM_MAX_BLOCKS_PER_CONTENT);
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(v, i);
        if (!json_is_object(b))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu: Input should be a valid dictionary",
                              where, i);
        json_t *type = json_object_get(b, "type");
        if (!json_is_string(type))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu.type: Field required", where, i);
        if (strcmp(json_string_value(type), "text") != 0)
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s.%zu.type: only 'text' content blocks are supported by the simulator",
                              where, i);
        if (!json_is_string(json_object_get(b, "text")))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu.text: Field required", where, i);
        int64_t ttl = 0;
        aq_status st = check_cache_control(b, where, i, &ttl, err);
        if (st != AQ_OK)
            return st;
        if (ttl && cached) {
            *cached = i + 1;
            *ttl_ms = ttl;
        }
    }
    *n_blocks = n;
    return AQ_OK;
}

static aq_sim_text text_of(json_t *s)
{
    return (aq_sim_text){json_string_value(s), json_string_length(s)};
}

/* Appends the blocks of a validated content value at blocks[*at]. */
static void fill_content(json_t *v, aq_sim_text *blocks, size_t *at)
{
    if (json_is_string(v)) {
        blocks[(*at)++] = text_of(v);
        return;
    }
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++)
        blocks[(*at)++] = text_of(json_object_get(json_array_get(v, i), "text"));
}

static bool model_known(const aq_sim_limits *lim, const char *model)
{
    if (!lim || lim->n_models == 0)
        return true;
    for (size_t i = 0; i < lim->n_models; i++)
        if (strcmp(lim->models[i], model) == 0)
            return true;
    return false;
}

aq_status aq_sim_parse_request(const char *body, size_t len, const aq_sim_limits *lim,
                               aq_sim_request *out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_sim_request r = {0};
    json_error_t jerr;
    char where[64];
    size_t n_sys = 0, n_blocks = 0, n_stop = 0, n;
    json_t *root = json_loadb(body, len, 0, &jerr);

    if (!root) {
        st = aq_err_set(err, AQ_INVALID_ARG, "The request body is not valid JSON: %s (line %d, column %d)",
                        jerr.text, jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "The request body is not valid JSON: expected an object");
        goto out;
    }

    /* Pass 1: validate everything and count. */
    json_t *model = json_object_get(root, "model");
    if (!model) {
        st = aq_err_set(err, AQ_INVALID_ARG, "model: Field required");
        goto out;
    }
    if (!json_is_string(model) || json_string_length(model) == 0 ||
        json_string_length(model) > AQ_SIM_MAX_MODEL_BYTES) {
        st = aq_err_set(err, AQ_INVALID_ARG, "model: Input should be a non-empty string of at most %d bytes",
                        AQ_SIM_MAX_MODEL_BYTES);
        goto out;
    }
    json_t *max_tokens = json_object_get(root, "max_tokens");
    if (!max_tokens) {
        st = aq_err_set(err, AQ_INVALID_ARG, "max_tokens: Field required");
        goto out;
    }
    if (!json_is_integer(max_tokens)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "max_tokens: Input should be a valid integer");
        goto out;
    }
    json_int_t mt = json_integer_value(max_tokens);
    if (mt < 1) {
        st = aq_err_set(err, AQ_INVALID_ARG, "max_tokens: Input should be greater than or equal to 1");
        goto out;
    }
    if (lim && lim->max_tokens_cap > 0 && mt > lim->max_tokens_cap) {
        st = aq_err_set(err, AQ_INVALID_ARG,
                        "max_tokens: %" PRId64 " > %" PRId64
                        ", which is the maximum allowed number of output tokens for %s",
                        (int64_t)mt, lim->max_tokens_cap, json_string_value(model));
        goto out;
    }

    json_t *messages = json_object_get(root, "messages");
    if (!messages) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: Field required");
        goto out;
    }
    if (!json_is_array(messages)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: Input should be a valid list");
        goto out;
    }
    n = json_array_size(messages);
    if (n == 0) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: at least one message is required");
        goto out;
    }
    if (n > AQ_SIM_MAX_MESSAGES) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: more than %d messages", AQ_SIM_MAX_MESSAGES);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        if (!json_is_object(m)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "messages.%zu: Input should be a valid dictionary", i);
            goto out;
        }
        json_t *role = json_object_get(m, "role");
        const char *rs = json_string_value(role);
        if (!rs || (strcmp(rs, "user") != 0 && strcmp(rs, "assistant") != 0)) {
            st = aq_err_set(err, AQ_INVALID_ARG,
                            "messages.%zu.role: Input should be 'user' or 'assistant'", i);
            goto out;
        }
        if (i == 0 && strcmp(rs, "user") != 0) {
            st = aq_err_set(err, AQ_INVALID_ARG, "messages: first message must use the \"user\" role");
            goto out;
        }
        json_t *content = json_object_get(m, "content");
        snprintf(where, sizeof(where), "messages.%zu.content", i);
        if (!content) {
            st = aq_err_set(err, AQ_INVALID_ARG, "%s: Field required", where);
            goto out;
        }
        size_t nb;
        if ((st = check_content(content, where, &nb, NULL, NULL, err)) != AQ_OK)
            goto out;
        n_blocks += nb;
    }

    json_t *system = json_object_get(root, "system");
    if (system && !json_is_null(system)) {
        if ((st = check_content(system, "system", &n_sys, &r.n_cached_system_blocks,
                                &r.cache_ttl_ms, err)) != AQ_OK)
            goto out;
    }

    json_t *temp = json_object_get(root, "temperature");
    if (temp && !json_is_null(temp)) {
        if (!json_is_number(temp)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "temperature: Input should be a valid number");
            goto out;
        }
        double t = json_number_value(temp);
        if (!(t >= 0.0 && t <= 1.0)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "temperature: Input should be between 0 and 1");
            goto out;
        }
        r.has_temperature = true;
        r.temperature = t + 0.0; /* -0.0 hashes like 0.0 */
    }

    json_t *stop = json_object_get(root, "stop_sequences");
    if (stop && !json_is_null(stop)) {
        if (!json_is_array(stop)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "stop_sequences: Input should be a valid list");
            goto out;
        }
        n_stop = json_array_size(stop);
        if (n_stop > AQ_SIM_MAX_STOP_SEQUENCES) {
            st = aq_err_set(err, AQ_INVALID_ARG, "stop_sequences: more than %d sequences",
                            AQ_SIM_MAX_STOP_SEQUENCES);
            goto out;
        }
        for (size_t i = 0; i < n_stop; i++) {
            json_t *s = json_array_get(stop, i);
            if (!json_is_string(s) || json_string_length(s) == 0) {
                st = aq_err_set(err, AQ_INVALID_ARG,
                                "stop_sequences.%zu: Input should be a non-empty string", i);
                goto out;
            }
        }
    }

    json_t *meta = json_object_get(root, "metadata");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "metadata: Input should be a valid dictionary");
            goto out;
        }
        json_t *uid = json_object_get(meta, "user_id");
        if (uid && !json_is_null(uid)) {
            if (!json_is_string(uid)) {
                st = aq_err_set(err, AQ_INVALID_ARG, "metadata.user_id: Input should be a valid string");
                goto out;
            }
            r.has_user_id = true;
            r.user_id = text_of(uid);
        }
    }

    json_t *stream = json_object_get(root, "stream");
    if (stream && json_is_true(stream)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "stream: streaming is not supported by agentq-sim");
        goto out;
    }

    /* Checked last so that a malformed request is a 400 whatever its model. */
    if (!model_known(lim, json_string_value(model))) {
        st = aq_err_set(err, AQ_NOT_FOUND, "model: %s", json_string_value(model));
        goto out;
    }

    /* Pass 2: fill, in one allocation. */
    size_t total_blocks = n_sys + n_blocks;
    size_t bytes = total_blocks * sizeof(aq_sim_text) + n * sizeof(aq_sim_message) +
                   n_stop * sizeof(aq_sim_text);
    char *mem = malloc(bytes ? bytes : 1);
    if (!mem) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    r.blocks = (aq_sim_text *)(void *)mem;
    r.messages = (aq_sim_message *)(void *)(mem + total_blocks * sizeof(aq_sim_text));
    r.stop = (aq_sim_text *)(void *)(mem + total_blocks * sizeof(aq_sim_text) +
                                     n * sizeof(aq_sim_message));
    size_t at = 0;
    if (n_sys)
        fill_content(system, r.blocks, &at);
    r.n_system_blocks = at;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        r.messages[i].assistant = strcmp(json_string_value(json_object_get(m, "role")), "user") != 0;
        r.messages[i].first_block = at;
        fill_content(json_object_get(m, "content"), r.blocks, &at);
        r.messages[i].n_blocks = at - r.messages[i].first_block;
    }
    r.n_blocks = at;
    r.n_messages = n;
    for (size_t i = 0; i < n_stop; i++)
        r.stop[i] = text_of(json_array_get(stop, i));
    r.n_stop = n_stop;
    r.model = text_of(model);
    r.max_tokens = (int64_t)mt;
    r.doc = root;
    root = NULL;
    *out = r;

out:
    json_decref(root);
    return st;
}

void aq_sim_request_free(aq_sim_request *r)
{
    if (!r)
        return;
    free(r->blocks);
    json_decref((json_t *)r->doc);
    memset(r, 0, sizeof(*r));
}

int aq_sim_error_http_status(aq_status st, const char **error_type)
{
    const char *type;
    int code;
    switch (st) {
    case AQ_INVALID_ARG: code = 400; type = "invalid_request_error"; break;
    case AQ_NOT_FOUND: code = 404; type = "not_found_error"; break;
    case AQ_TOO_BIG: code = 413; type = "request_too_large"; break;
    default: code = 500; type = "api_error"; break;
    }
    if (error_type)
        *error_type = type;
    return code;
}

/* ----------------------------------------------------------- tokens, hash */

int64_t aq_sim_tokens(size_t bytes)
{
    return (int64_t)((bytes + 3) / 4);
}

static size_t content_bytes(const aq_sim_request *r, size_t first, size_t n)
{
    size_t total = 0;
    for (size_t i = first; i < first + n; i++)
        total += r->blocks[i].len;
    return total;
}

int64_t aq_sim_input_tokens(const aq_sim_request *r)
{
    int64_t t = aq_sim_tokens(content_bytes(r, 0, r->n_system_blocks));
    for (size_t i = 0; i < r->n_messages; i++)
        t += AQ_SIM_MESSAGE_OVERHEAD_TOKENS +
             aq_sim_tokens(content_bytes(r, r->messages[i].first_block, r->messages[i].n_blocks));
    return t;
}

size_t aq_sim_utf8_cut(const char *s, size_t len, size_t max)
{
    if (max >= len)
        return len;
    size_t n = max;
    /* s[n] starts the first byte left out: back up while it continues a character. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static void hash_u64(XXH3_state_t *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    XXH3_64bits_update(h, b, sizeof(b));
}

static void hash_text(XXH3_state_t *h, aq_sim_text t)
{
    hash_u64(h, t.len);
    XXH3_64bits_update(h, t.ptr, t.len);
}

static uint64_t request_hash(const aq_sim_request *r)
{
    XXH3_state_t h;
    double temp = r->has_temperature ? r->temperature : 1.0;
    uint64_t tbits;

    XXH3_INITSTATE(&h);
    XXH3_64bits_reset(&h);
    XXH3_64bits_update(&h, "agentq-sim/1", 12);
    hash_text(&h, r->model);
    hash_u64(&h, r->n_system_blocks);
    for (size_t i = 0; i < r->n_system_blocks; i++)
        hash_text(&h, r->blocks[i]);
    hash_u64(&h, r->n_messages);
    for (size_t i = 0; i < r->n_messages; i++) {
        const aq_sim_message *m = &r->messages[i];
        hash_u64(&h, m->assistant ? 2 : 1);
        hash_u64(&h, m->n_blocks);
        for (size_t j = m->first_block; j < m->first_block + m->n_blocks; j++)
            hash_text(&h, r->blocks[j]);
    }
    hash_u64(&h, (uint64_t)r->max_tokens);
    memcpy(&tbits, &temp, sizeof(tbits));
    hash_u64(&h, tbits);
    return XXH3_64bits_digest(&h);
}

/* The cache entry a marked prefix is filed under: model + prefix blocks.
 * Never 0 (0 means "nothing marked"). */
static uint64_t prefix_hash(const aq_sim_request *r)
{
    XXH3_state_t h;
    XXH3_INITSTATE(&h);
    XXH3_64bits_reset(&h);
    XXH3_64bits_update(&h, "agentq-sim-prefix/1", 19);
    hash_text(&h, r->model);
    hash_u64(&h, r->n_cached_system_blocks);
    for (size_t i = 0; i < r->n_cached_system_blocks; i++)
        hash_text(&h, r->blocks[i]);
    uint64_t v = XXH3_64bits_digest(&h);
    return v ? v : 1;
}

void aq_sim_answer_cache_hit(aq_sim_answer *a)
{
    a->cache_read_input_tokens += a->cache_creation_input_tokens;
    a->cache_creation_input_tokens = 0;
}

/* ----------------------------------------------------------------- answer */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static aq_status parse_u32(const char *s, const char **end, uint32_t *out)
{
    char *e;
    errno = 0;
    if (*s < '0' || *s > '9')
        return AQ_INVALID_ARG;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || e == s || v < 1 || v > AQ_SIM_MAX_OUTPUT_TOKENS)
        return AQ_INVALID_ARG;
    *out = (uint32_t)v;
    *end = e;
    return AQ_OK;
}

aq_status aq_sim_output_range_parse(const char *s, aq_sim_output_range *out, aq_err *err)
{
    aq_sim_output_range r;
    const char *end;
    if (!s || parse_u32(s, &end, &r.min) != AQ_OK)
        goto bad;
    r.max = r.min;
    if (*end == '-' && parse_u32(end + 1, &end, &r.max) != AQ_OK)
        goto bad;
    if (*end != '\0' || r.max < r.min)
        goto bad;
    *out = r;
    return AQ_OK;
bad:
    return aq_err_set(err, AQ_CONFIG,
                      "output_tokens: '%s' is not N or MIN-MAX with 1 <= MIN <= MAX <= %d",
                      s ? s : "", AQ_SIM_MAX_OUTPUT_TOKENS);
}

static const char *const filler_words[] = {
    "alpha",   "bravo",  "charlie", "delta",   "echo",    "foxtrot", "golf",    "hotel",
    "india",   "juliet", "kilo",    "lima",    "mike",    "november", "oscar",  "papa",
    "quebec",  "romeo",  "sierra",  "tango",   "uniform", "victor",  "whiskey", "xray",
    "yankee",  "zulu",   "amber",   "basalt",  "cedar",   "dune",    "ember",   "fjord",
    "granite", "harbor", "island",  "jasper",  "kelp",    "lagoon",  "meadow",  "nectar",
    "orchard", "pebble", "quartz",  "river",   "summit",  "tundra",  "upland",  "valley",
    "willow",  "xenon",  "yarrow",  "zephyr",  "anchor",  "beacon",  "canyon",  "delta",
    "estuary", "forest", "glacier", "horizon", "inlet",   "jungle",  "knoll",   "lantern",
};
#define FILLER_WORDS (sizeof(filler_words) / sizeof(filler_words[0]))

static void buf_truncate(aq_buf *b, size_t n)
{
    if (n < b->len) {
        b->len = n;
        b->data[n] = '\0';
    }
}

aq_status aq_sim_answer_build(const aq_sim_request *r, aq_sim_output_range range, aq_buf *text,
                              aq_sim_answer *out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_sim_answer a = {.stop_reason = "end_turn"};
    uint64_t rng;

    a.hash = request_hash(r);
    rng = a.hash;
    uint32_t target = range.min;
    if (range.max > range.min)
        target += (uint32_t)(splitmix64(&rng) % ((uint64_t)range.max - range.min + 1));
    size_t target_bytes = (size_t)target * 4;

    aq_buf_reset(text);
    if ((st = aq_buf_append(text, "echo: ", 6)) != AQ_OK)
        goto fail;
    const aq_sim_message *last = NULL;
    for (size_t i = r->n_messages; i-- > 0;) {
        if (!r->messages[i].assistant) {
            last = &r->messages[i];
            break;
        }
    }
    size_t budget = AQ_SIM_ECHO_MAX_BYTES;
    for (size_t i = last ? last->first_block : 0; last && i < last->first_block + last->n_blocks && budget; i++) {
        size_t take = aq_sim_utf8_cut(r->blocks[i].ptr, r->blocks[i].len, budget);
        if (take == 0)
            break;
        if ((st = aq_buf_append(text, r->blocks[i].ptr, take)) != AQ_OK)
            goto fail;
        budget -= take;
    }
    if ((st = aq_buf_append(text, " | ", 3)) != AQ_OK)
        goto fail;
    size_t prefix = text->len;
    while (text->len < target_bytes) {
        const char *w = filler_words[splitmix64(&rng) % FILLER_WORDS];
        if (text->len > prefix && (st = aq_buf_append(text, " ", 1)) != AQ_OK)
            goto fail;
        if ((st = aq_buf_append_str(text, w)) != AQ_OK)
            goto fail;
    }
    if (target_bytes >= prefix)
        buf_truncate(text, target_bytes); /* fillers are ASCII: any cut is a boundary */

    if (aq_sim_tokens(text->len) > r->max_tokens) {
        uint64_t max_bytes = (uint64_t)r->max_tokens * 4;
        buf_truncate(text, aq_sim_utf8_cut(text->data, text->len, (size_t)max_bytes));
        a.stop_reason = "max_tokens";
    }
    const char *first = NULL;
    for (size_t i = 0; i < r->n_stop; i++) {
        const char *p = memmem(text->data, text->len, r->stop[i].ptr, r->stop[i].len);
        if (p && (!first || p < first)) {
            first = p;
            a.stop_sequence = r->stop[i];
        }
    }
    if (first) {
        buf_truncate(text, (size_t)(first - text->data));
        a.stop_reason = "stop_sequence";
    }
    a.input_tokens = aq_sim_input_tokens(r);
    a.output_tokens = aq_sim_tokens(text->len);
    if (r->n_cached_system_blocks > 0) {
        int64_t cached = aq_sim_tokens(content_bytes(r, 0, r->n_cached_system_blocks));
        a.input_tokens -= cached; /* tokens(all system) >= tokens(prefix) */
        a.cache_creation_input_tokens = cached;
        a.cache_prefix_hash = prefix_hash(r);
    }
    *out = a;
    return AQ_OK;

fail:
    return aq_err_set(err, st, "answer text over its cap of %zu bytes", text->cap);
}

/* ----------------------------------------------------------------- render */

static aq_status json_escape(aq_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    aq_status st = AQ_OK;
    size_t run = 0;
    for (size_t i = 0; i < n && st == AQ_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (i > run)
            st = aq_buf_append(out, s + run, i - run);
        run = i + 1;
        if (st != AQ_OK)
            break;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        st = aq_buf_append(out, esc, elen);
    }
    if (st == AQ_OK && n > run)
        st = aq_buf_append(out, s + run, n - run);
    return st;
}

aq_status aq_sim_render_message(aq_buf *out, const aq_sim_request *r, const aq_sim_answer *a,
                                const char *text, size_t text_len, const char *msg_id)
{
    aq_status st = aq_buf_append_str(out, "{\"id\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, msg_id);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
    if (st == AQ_OK) st = json_escape(out, r->model.ptr, r->model.len);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"content\":[{\"type\":\"text\",\"text\":\"");
    if (st == AQ_OK) st = json_escape(out, text, text_len);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\"}],\"stop_reason\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, a->stop_reason);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"stop_sequence\":");
    if (a->stop_sequence.ptr) {
        if (st == AQ_OK) st = aq_buf_append(out, "\"", 1);
        if (st == AQ_OK) st = json_escape(out, a->stop_sequence.ptr, a->stop_sequence.len);
        if (st == AQ_OK) st = aq_buf_append(out, "\"", 1);
    } else if (st == AQ_OK) {
        st = aq_buf_append_str(out, "null");
    }
    if (st == AQ_OK)
        st = aq_buf_printf(out,
                           ",\"usage\":{\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64
                           ",\"cache_creation_input_tokens\":%" PRId64
                           ",\"cache_read_input_tokens\":%" PRId64 "}}",
                           a->input_tokens, a->output_tokens, a->cache_creation_input_tokens,
                           a->cache_read_input_tokens);
    return st;
}

aq_status aq_sim_render_error(aq_buf *out, const char *error_type, const char *message,
                              const char *request_id)
{
    /* The message may quote the request: jansson's error text can hold the
     * first byte of a multi-byte character. Invalid UTF-8 becomes U+FFFD (at
     * most 3 bytes for 1) so that the body is always JSON. */
    size_t mlen = strlen(message);
    char *clean = malloc(3 * mlen + 1);
    if (!clean)
        return AQ_NOMEM;
    aq_utf8_sanitize(message, mlen, clean, 3 * mlen + 1);
    aq_status st = aq_buf_append_str(out, "{\"type\":\"error\",\"error\":{\"type\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, error_type);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"message\":\"");
    if (st == AQ_OK) st = json_escape(out, clean, strlen(clean));
    if (st == AQ_OK) st = aq_buf_append_str(out, "\"},\"request_id\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, request_id);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\"}");
    free(clean);
    return st;
}
