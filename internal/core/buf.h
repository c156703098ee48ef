/* A growable byte buffer with a hard cap chosen where it is created (curl's
 * dynbuf `toobig`). Everything that grows from the network or from a task
 * goes through one of these, so no input can make a process grow unbounded.
 * The content is always NUL-terminated (not counted in len). */
#ifndef AQ_CORE_BUF_H
#define AQ_CORE_BUF_H

#include <stddef.h>

#include "status.h"

typedef struct aq_buf {
    char *data;   /* NULL until the first append */
    size_t len;
    size_t alloc;
    size_t cap;   /* appends that would make len > cap fail with AQ_TOO_BIG */
} aq_buf;

void aq_buf_init(aq_buf *b, size_t cap);
aq_status aq_buf_append(aq_buf *b, const void *data, size_t n);
aq_status aq_buf_append_str(aq_buf *b, const char *s);
/* Grow len by n and point *at to the n new bytes, for code that writes in place. */
aq_status aq_buf_extend(aq_buf *b, size_t n, char **at);
aq_status aq_buf_printf(aq_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void aq_buf_reset(aq_buf *b);   /* len = 0, keeps the memory */
void aq_buf_free(aq_buf *b);    /* frees; the buffer may be reused after aq_buf_init */
/* Hand the bytes to the caller (who frees them); the buffer is left empty. */
char *aq_buf_take(aq_buf *b, size_t *len);

#endif
