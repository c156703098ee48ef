/* A check of a protobuf payload's wire format before protobuf-c decodes it.
 *
 * protobuf-c hands string fields over as C strings, so a U+0000 inside one
 * (legal in proto3) silently cuts it at the NUL: `id: "X\0tail"` would read
 * as "X", somebody else's id. It also unpacks nested messages recursively
 * with no depth limit, and task.proto nests (a tool_result holds content
 * blocks, which may hold tool_results...). This walks the payload once,
 * guided by the message descriptors, reading only tags and lengths: it
 * refuses nesting deeper than a bound and reports the first string field
 * that holds a NUL byte, by its path. Every string field of every message
 * counts, including fields added later. aq_task_unpack and aq_result_unpack
 * run it on every payload before protobuf-c sees it. */
#ifndef AQ_TASK_WIRE_H
#define AQ_TASK_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Nesting deeper than this is refused before protobuf-c recurses into it. */
/* Task > Message > ContentBlock > ToolResultBlock > ContentBlock > TextBlock
 * is the deepest a valid task goes (6). */
#define AQ_WIRE_MAX_DEPTH 16

typedef struct aq_wire_nul {
    char path[160];    /* e.g. "id", "messages[2].content", "metadata[0].value" */
    size_t offset;     /* of the NUL inside the field's bytes */
    size_t length;     /* the field's length on the wire */
    int depth;         /* 0: a field of the top-level message */
    uint32_t field_no; /* the field's number in its message */
} aq_wire_nul;

/* AQ_OK with *found = 0 when no string holds a NUL; AQ_OK with *found = 1 and
 * `nul` filled for the first one; AQ_TASK_DECODE when the bytes are not a
 * well-formed protobuf (truncated, a bad wire type, nesting over the bound). */
aq_status aq_wire_scan(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                           int *found, aq_wire_nul *nul, aq_err *err);

#endif
