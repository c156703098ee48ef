/* Comma-separated lists in configuration values ("a, b,c"): API keys, model
 * names, server URLs. Entries are trimmed, empty ones skipped, and a list
 * longer than its cap is an error, never silently cut. */
#ifndef AQ_CORE_LIST_H
#define AQ_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

typedef struct aq_list {
    char *mem;          /* one copy of the text the items point into */
    const char **items;
    size_t n;
} aq_list;

/* `what` names the option in the error. `s` may be NULL or empty (n = 0). */
aq_status aq_list_split(const char *s, const char *what, size_t max, aq_list *out, aq_err *err);
bool aq_list_contains(const aq_list *l, const char *item);
void aq_list_free(aq_list *l);

#endif
