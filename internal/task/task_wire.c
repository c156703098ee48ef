#include "task_wire.h"

#include <stdio.h>
#include <string.h>

/* Counters for the index of a repeated field's occurrences, by the field's
 * index in its descriptor; messages with more fields go without indices. */
#define MAX_COUNTED_FIELDS 64

typedef struct scan {
    const ProtobufCMessageDescriptor *top;
    const uint8_t *base;
    size_t len;
    int found;
    aq_wire_nul *nul;
    aq_err *err;
} scan;

static aq_status bad_wire(scan *s, const uint8_t *at, const char *what)
{
    return aq_err_set(s->err, AQ_TASK_DECODE, "payload (%zu bytes) does not decode as %s: %s at byte %zu",
                      s->len, s->top->name, what, (size_t)(at - s->base));
}

/* A base-128 varint of at most 10 bytes. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

static void name_field(char *out, size_t size, const char *prefix,
                       const ProtobufCFieldDescriptor *f, long index)
{
    const char *dot = *prefix ? "." : "";
    if (index >= 0)
        snprintf(out, size, "%s%s%s[%ld]", prefix, dot, f->name, index);
    else
        snprintf(out, size, "%s%s%s", prefix, dot, f->name);
}

static aq_status walk(scan *s, const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                      const uint8_t *end, int depth, const char *prefix)
{
    unsigned seen[MAX_COUNTED_FIELDS] = {0};
    if (depth > AQ_WIRE_MAX_DEPTH)
        return bad_wire(s, p, "messages nested deeper than the limit");
    while (p < end && !s->found) {
        const uint8_t *at = p;
        uint64_t tag, n;
        if (!read_varint(&p, end, &tag))
            return bad_wire(s, at, "truncated tag");
        uint32_t number = (uint32_t)(tag >> 3);
        if (number == 0 || tag >> 3 > 0x1fffffff)
            return bad_wire(s, at, "invalid field number");
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, end, &n))
                return bad_wire(s, at, "truncated varint");
            continue;
        case 1:
        case 5: {
            size_t width = (tag & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < width)
                return bad_wire(s, at, "truncated fixed-width field");
            p += width;
            continue;
        }
        case 2:
            break;
        default:
            return bad_wire(s, at, "unsupported wire type");
        }
        if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
            return bad_wire(s, at, "length past the end of the payload");
        const uint8_t *value = p;
        p += n;

        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, number);
        if (!f) /* an unknown field: protobuf-c keeps it as bytes */
            continue;
        long index = -1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t i = (size_t)(f - desc->fields);
            index = i < MAX_COUNTED_FIELDS ? (long)seen[i]++ : 0;
        }
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const uint8_t *nul = memchr(value, 0, (size_t)n);
            if (nul) {
                s->found = 1;
                name_field(s->nul->path, sizeof(s->nul->path), prefix, f, index);
                s->nul->offset = (size_t)(nul - value);
                s->nul->length = (size_t)n;
                s->nul->depth = depth;
                s->nul->field_no = number;
            }
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            char path[sizeof(s->nul->path)];
            name_field(path, sizeof(path), prefix, f, index);
            aq_status st = walk(s, f->descriptor, value, value + n, depth + 1, path);
            if (st != AQ_OK)
                return st;
        }
    }
    return AQ_OK;
}

aq_status aq_wire_scan(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                           int *found, aq_wire_nul *nul, aq_err *err)
{
    scan s = {.top = desc, .base = data, .len = len, .nul = nul, .err = err};
    aq_status st = walk(&s, desc, data, data + len, 0, "");
    if (st == AQ_OK)
        *found = s.found;
    return st;
}
