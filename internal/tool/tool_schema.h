/* JSON Schema (draft-07) validation of tool inputs, before dispatch.
 *
 * A thin C shim over valijson (Debian's libvalijson-dev, header-only C++,
 * with its nlohmann/json adapter). No C++ exception crosses into C: every
 * failure is a status and a message in `err`.
 *
 * A schema is compiled once (per task tool) and then used for any number of
 * validations; a compiled schema is read-only, so several threads may
 * validate against it at once.
 *
 * Bounds: schema text and input are at most AQ_TOOL_SCHEMA_MAX_BYTES and
 * AQ_TOOL_INPUT_MAX_BYTES, nest at most AQ_TOOL_SCHEMA_MAX_DEPTH levels
 * (AQ_TOO_BIG otherwise); where the schema has "pattern", "patternProperties"
 * or "format", no string of the input may be longer than
 * AQ_TOOL_REGEX_MAX_CHARS (a violation otherwise); `$ref` may only point
 * inside the schema ("#" or "#/pointer": nothing is ever fetched), "$id"
 * only at the root, and references may not loop back to a schema without
 * going into a property or an item ({"allOf": [{"$ref": "#"}]}: valijson
 * would recurse forever on any input).
 *
 * Not bounded: the time std::regex spends backtracking. A schema whose
 * pattern backtracks exponentially ("^(a+)+$") against an input crafted for
 * it can hold the calling thread for a long time; schemas come from task
 * publishers, inputs from the model. */
#ifndef AQ_TOOL_TOOL_SCHEMA_H
#define AQ_TOOL_TOOL_SCHEMA_H

#include <stddef.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AQ_TOOL_SCHEMA_MAX_BYTES (256u * 1024u)
#define AQ_TOOL_INPUT_MAX_BYTES (1024u * 1024u)
#define AQ_TOOL_SCHEMA_MAX_DEPTH 64
/* valijson checks "pattern" and "format" with libstdc++'s std::regex, which
 * recurses once per character (about 600 bytes of stack each): with a
 * schema that has either, strings of the input are capped at this. */
#define AQ_TOOL_REGEX_MAX_CHARS 1000

typedef struct aq_tool_schema aq_tool_schema;

/* Compile `json` (len bytes, need not be NUL-terminated). Fails with
 * AQ_INVALID_ARG and a message when the text is not JSON ("input_schema is
 * not JSON: ...") or not a valid draft-07 JSON Schema (checked against the
 * official draft-07 metaschema, embedded: "input_schema is not a valid JSON
 * Schema: /properties/city/type: ..."), when a `pattern` is not a valid
 * regular expression, or a `$ref` is not one of the above;
 * AQ_TOO_BIG over the caps; AQ_NOMEM. *out is written only on success. */
aq_status aq_tool_schema_compile(const char *json, size_t len, aq_tool_schema **out, aq_err *err);

/* Validate one input (JSON text). AQ_OK, or AQ_INVALID_ARG with a message
 * that names the violations and where, as JSON pointers, e.g.
 *   /city: expected string, got integer
 *   missing required property "units"
 *   /units: value is not one of the enum values
 * (up to three, then "(and N more)"); "input is not JSON: ..." when it does
 * not parse; AQ_TOO_BIG over the caps; AQ_NOMEM. */
aq_status aq_tool_schema_validate(const aq_tool_schema *schema, const char *input_json, size_t len,
                                  aq_err *err);

/* Accepts NULL. */
void aq_tool_schema_destroy(aq_tool_schema *schema);

/* Whether a task's input_schema_json compiles (aq_task_limits'
 * check_tool_schema hook): AQ_OK, or AQ_TASK_INVALID with the reason (a task
 * with a bad tool schema is refused at validation), or AQ_NOMEM. */
aq_status aq_tool_schema_check(const char *json, aq_err *err);

#ifdef __cplusplus
}
#endif

#endif
