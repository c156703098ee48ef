#include "ptrmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <xxhash.h>

#define TOMB ((const void *)1)

struct aq_ptrmap_slot {
    const void *key; /* NULL = empty, TOMB = deleted */
    void *value;
};

void aq_ptrmap_init(aq_ptrmap *m)
{
    m->slots = NULL;
    m->cap = m->len = m->tombs = 0;
}

void aq_ptrmap_free(aq_ptrmap *m)
{
    free(m->slots);
    aq_ptrmap_init(m);
}

static size_t slot_of(const aq_ptrmap *m, const void *key)
{
    uintptr_t k = (uintptr_t)key;
    return (size_t)XXH3_64bits(&k, sizeof(k)) & (m->cap - 1);
}

static aq_status rehash(aq_ptrmap *m, size_t cap)
{
    struct aq_ptrmap_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = calloc(cap, sizeof(*m->slots));
    if (!m->slots) {
        m->slots = old;
        return AQ_NOMEM;
    }
    m->cap = cap;
    m->len = m->tombs = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key && old[i].key != TOMB)
            aq_ptrmap_put(m, old[i].key, old[i].value);
    free(old);
    return AQ_OK;
}

aq_status aq_ptrmap_put(aq_ptrmap *m, const void *key, void *value)
{
    if (!key || key == TOMB) /* they mark empty and deleted slots */
        return AQ_INVALID_ARG;
    /* Keep load (live + tombstones) under 1/2 so probes stay short. */
    if ((m->len + m->tombs + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while ((m->len + 1) * 4 > cap) /* rehashing also clears tombstones */
            cap *= 2;
        aq_status st = rehash(m, cap);
        if (st != AQ_OK)
            return st;
    }
    size_t i = slot_of(m, key);
    struct aq_ptrmap_slot *tomb = NULL;
    for (;;) {
        struct aq_ptrmap_slot *s = &m->slots[i];
        if (s->key == key) {
            s->value = value;
            return AQ_OK;
        }
        if (s->key == TOMB && !tomb)
            tomb = s;
        if (!s->key) {
            if (tomb) {
                s = tomb;
                m->tombs--;
            }
            s->key = key;
            s->value = value;
            m->len++;
            return AQ_OK;
        }
        i = (i + 1) & (m->cap - 1);
    }
}

void *aq_ptrmap_get(const aq_ptrmap *m, const void *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].key)
            return NULL;
        if (m->slots[i].key == key)
            return m->slots[i].value;
    }
}

void *aq_ptrmap_take(aq_ptrmap *m, const void *key)
{
    if (!m->cap)
        return NULL;
    size_t i = slot_of(m, key);
    for (;;) {
        struct aq_ptrmap_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->key == key) {
            void *v = s->value;
            s->key = TOMB;
            s->value = NULL;
            m->len--;
            m->tombs++;
            return v;
        }
        i = (i + 1) & (m->cap - 1);
    }
}

size_t aq_ptrmap_len(const aq_ptrmap *m)
{
    return m->len;
}

void aq_ptrmap_clear(aq_ptrmap *m, void (*fn)(void *value))
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key && m->slots[i].key != TOMB && fn)
            fn(m->slots[i].value);
    }
    aq_ptrmap_free(m);
}
