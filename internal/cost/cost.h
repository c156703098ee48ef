/* What an LLM call costs: a price table per model (configuration, with the
 * provider's published prices as defaults) and exact integer arithmetic.
 *
 * Units. Prices are held in micro-dollars per million tokens, which is the
 * same number as pico-dollars (1e-12 USD) per token: "$3 per million input
 * tokens" is 3000000. A call's cost is
 *
 *   pico = input_tokens x in + output_tokens x out
 *        + cache_creation_input_tokens x cache_write
 *        + cache_read_input_tokens x cache_read
 *
 * summed in 128 bits (nothing overflows for any 64-bit token counts and
 * prices up to AQ_COST_MAX_PRICE), then converted to micro-dollars (1e-6 USD)
 * once, rounding half up, and saturated at UINT64_MAX. Rounding once means
 * that the four parts are not rounded separately: 1 token at $0.10/Mtok and 4
 * at $0.10/Mtok cost 0 micro-dollars each (0.1 and 0.4 rounded), 5 cost 1.
 *
 * Pure logic: no I/O, no logging, no clock. A table is immutable after
 * aq_cost_table_parse and may be read from any thread, except
 * aq_cost_note_unpriced (single-threaded: the worker's loop).
 */
#ifndef AQ_COST_COST_H
#define AQ_COST_COST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define AQ_COST_MAX_MODELS 128            /* rows in a table, defaults included */
#define AQ_COST_MODEL_MAX 128             /* characters of a model id in the table */
#define AQ_COST_PRICES_MAX_LEN 8192       /* characters of a prices string */
#define AQ_COST_MAX_PRICE 10000000000LL   /* $10,000 per million tokens, in micro-USD/Mtok */
#define AQ_COST_MAX_UNPRICED_NOTED 64     /* distinct unpriced models aq_cost_note_unpriced reports */

/* Micro-dollars per million tokens (= pico-dollars per token). */
typedef struct aq_cost_price {
    int64_t in;          /* input_tokens */
    int64_t out;         /* output_tokens */
    int64_t cache_write; /* cache_creation_input_tokens (the 5-minute cache write price) */
    int64_t cache_read;  /* cache_read_input_tokens */
} aq_cost_price;

/* The provider's usage block (64-bit so that any sum of calls fits). */
typedef struct aq_cost_usage {
    uint64_t input_tokens;
    uint64_t output_tokens;
    uint64_t cache_creation_input_tokens;
    uint64_t cache_read_input_tokens;
} aq_cost_usage;

/* The built-in prices: the reference table (USD per million tokens; the
 * cache write price is the 5-minute one, which is what the worker's
 * `cache_control: {"type":"ephemeral"}` without a ttl buys). Parsed under
 * every configured string. */
#define AQ_COST_DEFAULT_PRICES                                                          \
    "claude-haiku-4-5: in=1, out=5, cache_write=1.25, cache_read=0.1;"                 \
    "claude-sonnet-4-5: in=3, out=15, cache_write=3.75, cache_read=0.3;"               \
    "claude-sonnet-4-6: in=3, out=15, cache_write=3.75, cache_read=0.3;"               \
    "claude-opus-4-5: in=5, out=25, cache_write=6.25, cache_read=0.5;"                 \
    "claude-opus-4-6: in=5, out=25, cache_write=6.25, cache_read=0.5;"                 \
    "claude-opus-4-7: in=5, out=25, cache_write=6.25, cache_read=0.5;"                 \
    "claude-opus-4-8: in=5, out=25, cache_write=6.25, cache_read=0.5"

typedef struct aq_cost_table aq_cost_table;

/* Parse a prices string on top of AQ_COST_DEFAULT_PRICES. Grammar (spaces
 * and tabs allowed around every token):
 *
 *   prices  = "" | entry *( ";" entry )
 *   entry   = model ":" setting *( "," setting )
 *   model   = 1..AQ_COST_MODEL_MAX of [A-Za-z0-9._@/:-]
 *   setting = ( "in" | "out" | "cache_write" | "cache_read" ) "=" usd
 *   usd     = digits [ "." 1*6digits ]        ; USD per million tokens, <= 10000
 *
 * e.g. "claude-haiku-4-5: in=0.8, out=4; my-proxy-model: in=2, out=8".
 * A model id may contain ':' (Bedrock ids such as
 * "anthropic.claude-3-haiku-20240307-v1:0"): the ':' that ends the model is
 * the last one before the first '='.
 *
 * An entry replaces its model's whole row (a default one included): `in` and
 * `out` are required; `cache_write` defaults to 1.25 x in and `cache_read`
 * to 0.1 x in (the provider's multipliers), rounded half up to a micro-dollar
 * per million tokens. NULL or blank: the defaults alone. Strict: an empty
 * entry, a missing ':' or '=', a bad model id, an unknown or repeated
 * setting, a model given twice, a value that is not a plain decimal (no sign,
 * no exponent, at most 6 decimals) or is over $10,000, more than
 * AQ_COST_MAX_MODELS rows, and a string longer than AQ_COST_PRICES_MAX_LEN
 * are AQ_CONFIG with a message that names the entry and the setting. `out`
 * is written only on success. */
aq_status aq_cost_table_parse(const char *s, aq_cost_table **out, aq_err *err);
/* Accepts NULL. */
void aq_cost_table_destroy(aq_cost_table *t);

/* Rows in table order (the defaults first, then new models in the order
 * given): for --print-config-style listings and metrics. false past the end. */
size_t aq_cost_table_count(const aq_cost_table *t);
bool aq_cost_table_row(const aq_cost_table *t, size_t i, const char **model, aq_cost_price *price);

/* The price of `model`: its exact row; else, when the id is a row's id
 * followed by a date snapshot suffix ("-YYYYMMDD" or "@YYYYMMDD", e.g.
 * "claude-sonnet-4-5-20250929" -> "claude-sonnet-4-5"), that row: the alias
 * and its dated snapshot are the same model. No other guessing (a family
 * prefix is not a price: "claude-opus-4-9" may cost anything). false when
 * there is no price; `out` is untouched then. */
bool aq_cost_price_of(const aq_cost_table *t, const char *model, aq_cost_price *out);

/* Micro-dollars for `u` at `p`: exact, rounded once, half up, saturated. */
uint64_t aq_cost_compute(const aq_cost_price *p, const aq_cost_usage *u);

/* aq_cost_compute at the price of `model`. false (and *micro_usd = 0) when
 * the model has no price: the Result then carries cost 0 and cost_unknown. */
bool aq_cost_of(const aq_cost_table *t, const char *model, const aq_cost_usage *u,
                uint64_t *micro_usd);

/* The most a call can cost before it is made, for budgets to reserve:
 * every input token at the dearest input-side price (max of in, cache_write
 * and cache_read: with prompt caching on, the whole prompt may be a cache
 * write) plus max_tokens at the output price, rounded up. Saturated. */
uint64_t aq_cost_estimate_max(const aq_cost_price *p, uint64_t input_tokens, uint64_t max_tokens);
/* The same at the price of `model`; false (and *micro_usd = 0) when unpriced. */
bool aq_cost_estimate_max_of(const aq_cost_table *t, const char *model, uint64_t input_tokens,
                             uint64_t max_tokens, uint64_t *micro_usd);

/* For a "no price for model X" warning logged once per model: true the
 * first time `model` is passed (and it has no price), false afterwards, for
 * priced models, and for every model once AQ_COST_MAX_UNPRICED_NOTED distinct
 * ones were reported (model ids come from tasks: the set stays bounded).
 * Single-threaded. */
bool aq_cost_note_unpriced(aq_cost_table *t, const char *model);

/* Format micro-dollars as USD with 6 decimals ("0.001234"); returns `buf`.
 * `cap` >= 32 always suffices. */
const char *aq_cost_format_usd(uint64_t micro_usd, char *buf, size_t cap);

#endif
