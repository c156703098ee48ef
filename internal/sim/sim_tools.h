/* The simulator's tool inputs: a deterministic value for a JSON Schema (the
 * subset tool schemas use), and a way to spoil one so that it violates the
 * schema (fault_tool_schema). Pure functions over jansson values.
 *
 * Generation (aq_sim_tools_gen):
 *   const -> that value; enum -> its first value; anyOf/oneOf/allOf -> the first
 *   alternative; type (a list: its first type other than "null"; absent:
 *   object if there are properties, array if there are items, else string):
 *     object   the required properties, or every property when "required" is
 *              absent, each generated from its own schema (recursively)
 *     array    max(minItems, 1) items (0 if maxItems is 0), at most maxItems,
 *              from "items" (each item with its own seed, so they differ)
 *     string   by format (date-time, date, time, email, uri/url, uuid,
 *              ipv4, hostname), else "<property>-<4 hex>", padded with 'x' to
 *              minLength and cut to maxLength
 *     integer  1 + seed % 100 moved into [minimum, maximum] (exclusive bounds
 *              and multipleOf respected)
 *     number   the same plus 0.5, moved inside the bounds
 *     boolean  true; null: null
 *   Not simulated: pattern, $ref, if/then/else, dependencies,
 *   propertyNames, uniqueItems beyond distinct seeds. Depth is capped at
 *   AQ_SIM_GEN_MAX_DEPTH and the value at AQ_SIM_GEN_MAX_NODES values (then
 *   the rest is null) and AQ_SIM_GEN_MAX_BYTES of strings, so a hostile
 *   schema cannot blow the answer up.
 *
 * Spoiling (aq_sim_tools_spoil): drop the first required property the value
 * has; else give the first property with a declared type a value of another
 * type. A schema with neither cannot be violated this way. */
#ifndef AQ_SIM_SIM_TOOLS_H
#define AQ_SIM_SIM_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AQ_SIM_GEN_MAX_DEPTH 16
#define AQ_SIM_GEN_MAX_NODES 4096
#define AQ_SIM_GEN_MAX_ITEMS 64    /* minItems above this is cut (the schema then fails) */
#define AQ_SIM_GEN_MAX_STRING 4096 /* minLength above this is cut */
#define AQ_SIM_GEN_MAX_BYTES (256 * 1024) /* string bytes in one value: beyond, minLength is not padded */

/* A new value for `schema` (never NULL unless out of memory). */
json_t *aq_sim_tools_gen(json_t *schema, uint64_t seed);

/* Make `value` (an object generated for `schema`) violate the schema;
 * false when this schema gives no way to. */
bool aq_sim_tools_spoil(json_t *schema, json_t *value);

/* ^[a-zA-Z0-9_-]{1,64}$ */
bool aq_sim_tool_name_valid(const char *s, size_t len);

#endif
