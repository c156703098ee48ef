#include "list.h"

#include <stdlib.h>
#include <string.h>

aq_status aq_list_split(const char *s, const char *what, size_t max, aq_list *out, aq_err *err)
{
    aq_list l = {NULL, NULL, 0};
    aq_status st = AQ_OK;
    char *save = NULL;
    if (s && *s) {
        l.mem = strdup(s);
        l.items = calloc(max ? max : 1, sizeof(*l.items));
        if (!l.mem || !l.items) {
            st = aq_err_set(err, AQ_NOMEM, "out of memory");
            goto out;
        }
        for (char *tok = strtok_r(l.mem, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            tok += strspn(tok, " \t");
            char *e = tok + strlen(tok);
            while (e > tok && (e[-1] == ' ' || e[-1] == '\t'))
                *--e = '\0';
            if (!*tok)
                continue;
            if (l.n == max) {
                st = aq_err_set(err, AQ_CONFIG, "%s: more than %zu entries", what, max);
                goto out;
            }
            l.items[l.n++] = tok;
        }
    }
    *out = l;
    return AQ_OK;
out:
    aq_list_free(&l);
    return st;
}

bool aq_list_contains(const aq_list *l, const char *item)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], item) == 0)
            return true;
    return false;
}

void aq_list_free(aq_list *l)
{
    free(l->mem);
    free(l->items);
    l->mem = NULL;
    l->items = NULL;
    l->n = 0;
}
