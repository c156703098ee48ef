/* A small open-addressing map from pointer to pointer (XXH3 of the address).
 * Not thread-safe: the owner locks. Used where a library hands back only a
 * pointer we gave it (nats.c's publish-ack handler returns the natsMsg*). */
#ifndef AQ_CORE_PTRMAP_H
#define AQ_CORE_PTRMAP_H

#include <stddef.h>

#include "status.h"

typedef struct aq_ptrmap {
    struct aq_ptrmap_slot *slots;
    size_t cap;   /* power of two */
    size_t len;
    size_t tombs;
} aq_ptrmap;

void aq_ptrmap_init(aq_ptrmap *m);
void aq_ptrmap_free(aq_ptrmap *m);
/* NULL and (void *)1 are not valid keys (AQ_INVALID_ARG). */
aq_status aq_ptrmap_put(aq_ptrmap *m, const void *key, void *value);
/* The value, or NULL if absent. */
void *aq_ptrmap_get(const aq_ptrmap *m, const void *key);
/* Remove and return the value, or NULL if absent. */
void *aq_ptrmap_take(aq_ptrmap *m, const void *key);
size_t aq_ptrmap_len(const aq_ptrmap *m);
/* Call fn on every value, then empty the map. */
void aq_ptrmap_clear(aq_ptrmap *m, void (*fn)(void *value));

#endif
