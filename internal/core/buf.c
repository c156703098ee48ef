#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void aq_buf_init(aq_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap;
}

static aq_status buf_reserve(aq_buf *b, size_t extra)
{
    if (extra > b->cap - b->len)
        return AQ_TOO_BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->alloc)
        return AQ_OK;
    size_t n = b->alloc ? b->alloc : 256;
    while (n < need)
        n *= 2;
    if (b->cap < SIZE_MAX && n > b->cap + 1)
        n = b->cap + 1;
    char *p = realloc(b->data, n);
    if (!p)
        return AQ_NOMEM;
    b->data = p;
    b->alloc = n;
    return AQ_OK;
}

aq_status aq_buf_append(aq_buf *b, const void *data, size_t n)
{
    aq_status st = buf_reserve(b, n);
    if (st != AQ_OK)
        return st;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return AQ_OK;
}

aq_status aq_buf_extend(aq_buf *b, size_t n, char **at)
{
    aq_status st = buf_reserve(b, n);
    if (st != AQ_OK)
        return st;
    *at = b->data + b->len;
    b->len += n;
    b->data[b->len] = '\0';
    return AQ_OK;
}

aq_status aq_buf_append_str(aq_buf *b, const char *s)
{
    return aq_buf_append(b, s, strlen(s));
}

aq_status aq_buf_printf(aq_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return AQ_INVALID_ARG;
    aq_status st = buf_reserve(b, (size_t)n);
    if (st != AQ_OK)
        return st;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return AQ_OK;
}

void aq_buf_reset(aq_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void aq_buf_free(aq_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->alloc = 0;
}

char *aq_buf_take(aq_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->alloc = 0;
    return p;
}
