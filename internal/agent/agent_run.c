#include "agent_run.h"
#include "task/task_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_STATE_VERSION 1

struct aq_run {
    Agentq__V1__RunState *st; /* every pointer malloc'd: freed with free_unpacked */
    char *output;             /* fill_result's text, cached */
};

/* ---- the transition table: every phase change goes through `go` ---- */

typedef enum run_event {
    EV_NEXT,        /* aq_run_next */
    EV_ANSWER,      /* aq_run_apply_answer */
    EV_BATCH_DONE,  /* the last result of a batch (apply_tool_result, or next at a ceiling) */
    EV_FAIL,        /* aq_run_fail */
} run_event;

typedef enum run_cond {
    C_DEADLINE_FAIL,
    C_DEADLINE_FINAL,
    C_STEPS_FAIL,
    C_STEPS_FINAL,
    C_NO_TOOL_USE,
    C_LAST_STEP_FAIL,
    C_TOOLS_OVER_FAIL,
    C_TOOL_USE,
    C_CEILING_FINAL,
    C_MORE_STEPS,
    C_FINAL_ANSWER,
    C_ANY,
} run_cond;

#define PH(x) AGENTQ__V1__RUN_PHASE__RUN_PHASE_##x

static const struct transition {
    Agentq__V1__RunPhase from;
    run_event event;
    run_cond cond;
    Agentq__V1__RunPhase to;
} transitions[] = {
    {PH(NEED_MODEL), EV_NEXT, C_DEADLINE_FAIL, PH(FAILED)},
    {PH(NEED_MODEL), EV_NEXT, C_DEADLINE_FINAL, PH(NEED_FINAL)},
    {PH(NEED_MODEL), EV_NEXT, C_STEPS_FAIL, PH(FAILED)},
    {PH(NEED_MODEL), EV_NEXT, C_STEPS_FINAL, PH(NEED_FINAL)},
    {PH(NEED_MODEL), EV_ANSWER, C_NO_TOOL_USE, PH(DONE)},
    {PH(NEED_MODEL), EV_ANSWER, C_LAST_STEP_FAIL, PH(FAILED)},
    {PH(NEED_MODEL), EV_ANSWER, C_TOOLS_OVER_FAIL, PH(FAILED)},
    {PH(NEED_MODEL), EV_ANSWER, C_TOOL_USE, PH(TOOLS_PENDING)},
    {PH(TOOLS_PENDING), EV_NEXT, C_DEADLINE_FAIL, PH(FAILED)},
    {PH(TOOLS_PENDING), EV_BATCH_DONE, C_CEILING_FINAL, PH(NEED_FINAL)},
    {PH(TOOLS_PENDING), EV_BATCH_DONE, C_MORE_STEPS, PH(NEED_MODEL)},
    {PH(NEED_FINAL), EV_ANSWER, C_FINAL_ANSWER, PH(DONE)},
    {PH(NEED_MODEL), EV_FAIL, C_ANY, PH(FAILED)},
    {PH(TOOLS_PENDING), EV_FAIL, C_ANY, PH(FAILED)},
    {PH(NEED_FINAL), EV_FAIL, C_ANY, PH(FAILED)},
    {PH(FAILED), EV_FAIL, C_ANY, PH(FAILED)},
};

/* The deadline in TOOLS_PENDING with `final` is two rows: the calls not run
 * get "ceiling" results, which completes the batch (EV_BATCH_DONE,
 * C_CEILING_FINAL). */

static aq_status go(aq_run *r, run_event ev, run_cond cond, aq_err *err)
{
    for (size_t i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++) {
        const struct transition *t = &transitions[i];
        if (t->from == r->st->phase && t->event == ev && t->cond == cond) {
            r->st->phase = t->to;
            return AQ_OK;
        }
    }
    return aq_err_set(err, AQ_INVALID_ARG, "run %s: no transition from phase %s for event %d/%d",
                      r->st->task_id, aq_run_phase_name(r->st->phase), (int)ev, (int)cond);
}

/* ---- building protobuf values that free_unpacked can free ---- */

static void *xclone(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(m, buf);
    void *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    return c;
}

static void xfree(void *m)
{
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

/* Replace a string field (the old value may be the shared empty string). */
static bool set_str(char **field, const char *v)
{
    char *c = xstrdup(v);
    if (!c)
        return false;
    if (*field && *field != protobuf_c_empty_string)
        free(*field);
    *field = c;
    return true;
}

static bool push(void ***arr, size_t *n, void *item)
{
    if (!item)
        return false;
    void **a = realloc(*arr, (*n + 1) * sizeof(void *));
    if (!a) {
        xfree(item);
        return false;
    }
    a[(*n)++] = item;
    *arr = a;
    return true;
}

#define PUSH(arr, n, item) push((void ***)&(arr), &(n), (item))

static Agentq__V1__ContentBlock *text_block(const char *text)
{
    Agentq__V1__ContentBlock *b = malloc(sizeof(*b));
    Agentq__V1__TextBlock *t = malloc(sizeof(*t));
    if (!b || !t || !(text = strdup(text))) {
        free(b);
        free(t);
        return NULL;
    }
    agentq__v1__content_block__init(b);
    agentq__v1__text_block__init(t);
    t->text = (char *)text;
    b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    b->text = t;
    return b;
}

static Agentq__V1__Message *new_message(const char *role)
{
    Agentq__V1__Message *m = malloc(sizeof(*m));
    if (!m)
        return NULL;
    agentq__v1__message__init(m);
    if (!set_str(&m->role, role)) {
        free(m);
        return NULL;
    }
    return m;
}

static aq_status nomem(aq_err *err)
{
    return aq_err_set(err, AQ_NOMEM, "agent run: out of memory");
}

/* ---- life ---- */

void aq_run_limits_resolve(const Agentq__V1__Task *task, const aq_run_defaults *d,
                           aq_run_limits *out)
{
    int64_t steps = task->max_steps ? (int64_t)task->max_steps : d->max_steps;
    int64_t calls = task->max_tool_calls ? (int64_t)task->max_tool_calls : d->max_tool_calls;
    if (steps > d->max_steps_cap)
        steps = d->max_steps_cap;
    if (steps < 1)
        steps = 1;
    if (calls > d->max_tool_calls_cap)
        calls = d->max_tool_calls_cap;
    if (calls < 0)
        calls = 0;
    out->max_steps = (uint32_t)steps;
    out->max_tool_calls = (uint32_t)calls;
    out->deadline_unix_ms = task->deadline_unix_ms > 0 ? task->deadline_unix_ms : 0;
    switch (task->ceiling_action) {
    case AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FAIL: out->ceiling_final = false; break;
    case AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FINAL: out->ceiling_final = true; break;
    default: out->ceiling_final = d->ceiling_final; break;
    }
}

static aq_status wrap(Agentq__V1__RunState *st, aq_run **out, aq_err *err)
{
    aq_run *r = calloc(1, sizeof(*r));
    if (!r) {
        xfree(st);
        return nomem(err);
    }
    r->st = st;
    *out = r;
    return AQ_OK;
}

aq_status aq_run_new(const Agentq__V1__Task *task, const Agentq__V1__Message *const *history,
                     size_t n_history, int64_t now_unix_ms, aq_run **out, aq_err *err)
{
    aq_run *r = NULL;
    aq_status st;
    if (!task || !task->id || !*task->id)
        return aq_err_set(err, AQ_INVALID_ARG, "agent run: the task has no id");
    Agentq__V1__RunState *s = malloc(sizeof(*s));
    if (!s)
        return nomem(err);
    agentq__v1__run_state__init(s);
    if ((st = wrap(s, &r, err)) != AQ_OK)
        return st;
    s->version = RUN_STATE_VERSION;
    s->phase = PH(NEED_MODEL);
    s->created_unix_ms = s->updated_unix_ms = now_unix_ms;
    s->usage = malloc(sizeof(*s->usage));
    if (!s->usage || !set_str(&s->task_id, task->id) || !set_str(&s->session_id, task->session_id))
        goto oom;
    agentq__v1__usage__init(s->usage);
    for (size_t i = 0; i < n_history; i++)
        if (!PUSH(s->conversation, s->n_conversation, xclone(&history[i]->base)))
            goto oom;
    s->history_messages = (uint32_t)n_history;
    if (task->n_messages == 0) {
        Agentq__V1__Message *m = new_message("user");
        if (!m || !set_str(&m->content, task->prompt) ||
            !PUSH(s->conversation, s->n_conversation, m)) {
            xfree(m);
            goto oom;
        }
    }
    for (size_t i = 0; i < task->n_messages; i++)
        if (!PUSH(s->conversation, s->n_conversation, xclone(&task->messages[i]->base)))
            goto oom;
    s->own_from = (uint32_t)s->n_conversation;
    *out = r;
    return AQ_OK;
oom:
    aq_run_free(r);
    return nomem(err);
}

void aq_run_free(aq_run *r)
{
    if (!r)
        return;
    xfree(r->st);
    free(r->output);
    free(r);
}

const Agentq__V1__RunState *aq_run_state(const aq_run *r)
{
    return r->st;
}

Agentq__V1__RunPhase aq_run_phase(const aq_run *r)
{
    return r->st->phase;
}

const char *aq_run_phase_name(Agentq__V1__RunPhase ph)
{
    switch (ph) {
    case PH(NEED_MODEL): return "need_model";
    case PH(TOOLS_PENDING): return "tools_pending";
    case PH(NEED_FINAL): return "need_final";
    case PH(DONE): return "done";
    case PH(FAILED): return "failed";
    default: return "unknown";
    }
}

Agentq__V1__Message *const *aq_run_turn(const aq_run *r, size_t *n)
{
    *n = r->st->n_conversation - r->st->history_messages;
    return r->st->conversation + r->st->history_messages;
}

/* ---- codec ---- */

aq_status aq_run_encode(const aq_run *r, size_t cap, aq_buf *out, aq_err *err)
{
    size_t n = agentq__v1__run_state__get_packed_size(r->st);
    if (n > cap)
        return aq_err_set(err, AQ_TOO_BIG,
                          "run %s: checkpoint is %zu bytes, over the cap of %zu (runs_max_bytes)",
                          r->st->task_id, n, cap);
    char *at = NULL;
    aq_buf_reset(out);
    aq_status st = aq_buf_extend(out, n, &at);
    if (st != AQ_OK)
        return aq_err_set(err, st, "run %s: checkpoint of %zu bytes: %s", r->st->task_id, n,
                          aq_status_text(st));
    agentq__v1__run_state__pack(r->st, (uint8_t *)at);
    return AQ_OK;
}

aq_status aq_run_decode(const void *data, size_t len, size_t cap, aq_run **out, aq_err *err)
{
    if (len > cap)
        return aq_err_set(err, AQ_TOO_BIG, "run checkpoint is %zu bytes, over the cap of %zu", len,
                          cap);
    /* Anyone who may write the bucket can put bytes here: the same wire
     * check as a task's (nesting bounded before protobuf-c recurses, no
     * NUL-cut strings, no field 0) before unpacking. */
    int has_nul = 0;
    aq_wire_nul nul;
    if (aq_wire_scan(&agentq__v1__run_state__descriptor, data, len, &has_nul, &nul, err) != AQ_OK) {
        aq_err_prefix(err, "run checkpoint");
        if (err)
            err->status = AQ_INVALID_ARG;
        return AQ_INVALID_ARG;
    }
    if (has_nul)
        return aq_err_set(err, AQ_INVALID_ARG, "run checkpoint: %s holds a NUL byte", nul.path);
    Agentq__V1__RunState *s = agentq__v1__run_state__unpack(NULL, len, data);
    if (!s)
        return aq_err_set(err, AQ_INVALID_ARG, "run checkpoint (%zu bytes) does not decode as "
                          "agentq.v1.RunState", len);
    if (s->version != RUN_STATE_VERSION || !*s->task_id || s->phase == PH(UNSPECIFIED) ||
        s->phase > PH(FAILED) || s->own_from > s->n_conversation ||
        s->history_messages > s->own_from) {
        aq_err_set(err, AQ_INVALID_ARG, "run checkpoint is not a valid RunState (version %u, "
                   "phase %d, %zu messages)", s->version, (int)s->phase, s->n_conversation);
        xfree(s);
        return AQ_INVALID_ARG;
    }
    /* What the machine relies on: a usage, a record per pending call, a
     * result for every call marked done (else it is repeated: the key is
     * the same), an id on every pending call. */
    bool ok = true;
    if (!s->usage && (s->usage = malloc(sizeof(*s->usage))) != NULL)
        agentq__v1__usage__init(s->usage);
    ok = s->usage != NULL;
    for (size_t i = 0; ok && i < s->n_pending; i++) {
        Agentq__V1__PendingToolCall *c = s->pending[i];
        if (!*c->id) {
            aq_err_set(err, AQ_INVALID_ARG, "run checkpoint %s: a pending tool call without an id",
                       s->task_id);
            xfree(s);
            return AQ_INVALID_ARG;
        }
        if (!c->record && (c->record = malloc(sizeof(*c->record))) != NULL) {
            agentq__v1__tool_call_record__init(c->record);
            ok = set_str(&c->record->id, c->id) && set_str(&c->record->name, c->name);
        }
        ok = ok && c->record;
        if (c->done && !c->result)
            c->done = false;
    }
    if (!ok) {
        xfree(s);
        return nomem(err);
    }
    return wrap(s, out, err);
}

/* ---- steps ---- */

/* The text asking for the final answer goes into the last user turn (after
 * its tool_result blocks, where the API allows text), or a new one. */
static aq_status enter_final(aq_run *r, const char *ceiling, run_event ev, run_cond cond,
                             aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    char text[256];
    snprintf(text, sizeof(text), AQ_RUN_FINAL_PROMPT, ceiling);
    if (!*s->ceiling && !set_str(&s->ceiling, ceiling))
        return nomem(err);
    Agentq__V1__Message *last = s->n_conversation ? s->conversation[s->n_conversation - 1] : NULL;
    if (!last || strcmp(last->role, "user") != 0) {
        last = new_message("user");
        if (!PUSH(s->conversation, s->n_conversation, last))
            return nomem(err);
    }
    if (last->n_blocks == 0 && *last->content) {
        /* string content becomes a text block, so that one more can follow */
        if (!PUSH(last->blocks, last->n_blocks, text_block(last->content)) ||
            !set_str(&last->content, ""))
            return nomem(err);
    }
    if (!PUSH(last->blocks, last->n_blocks, text_block(text)))
        return nomem(err);
    return go(r, ev, cond, err);
}

static aq_status fail_at(aq_run *r, const char *ceiling, const char *message, run_event ev,
                         run_cond cond, aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    if (!*s->ceiling && !set_str(&s->ceiling, ceiling))
        return nomem(err);
    if (!s->error) {
        s->error = malloc(sizeof(*s->error));
        if (!s->error)
            return nomem(err);
        agentq__v1__error__init(s->error);
    }
    if (!set_str(&s->error->class_, aq_status_class(AQ_STEP_LIMIT)) ||
        !set_str(&s->error->message, message))
        return nomem(err);
    return go(r, ev, cond, err);
}

/* Every result is in: one user message, a tool_result per tool_use in the
 * order of the tool_use blocks (the order of `pending`). */
static aq_status finish_batch(aq_run *r, int64_t now, aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    Agentq__V1__Message *m = new_message("user");
    if (!m)
        return nomem(err);
    for (size_t i = 0; i < s->n_pending; i++) {
        Agentq__V1__ContentBlock b = AGENTQ__V1__CONTENT_BLOCK__INIT;
        b.block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT;
        b.tool_result = s->pending[i]->result;
        if (!b.tool_result || !PUSH(m->blocks, m->n_blocks, xclone(&b.base))) {
            xfree(m);
            return b.tool_result ? nomem(err)
                                 : aq_err_set(err, AQ_INVALID_ARG, "run %s: tool call %s has no "
                                              "result", s->task_id, s->pending[i]->id);
        }
    }
    if (!PUSH(s->conversation, s->n_conversation, m))
        return nomem(err);
    Agentq__V1__StepRecord *step = s->n_steps ? s->steps[s->n_steps - 1] : NULL;
    for (size_t i = 0; step && i < s->n_pending; i++)
        if (s->pending[i]->record &&
            !PUSH(step->tool_calls, step->n_tool_calls, xclone(&s->pending[i]->record->base)))
            return nomem(err);
    for (size_t i = 0; i < s->n_pending; i++)
        xfree(s->pending[i]);
    free(s->pending);
    s->pending = NULL;
    s->n_pending = 0;
    s->updated_unix_ms = now;
    if (*s->ceiling)
        return enter_final(r, s->ceiling, EV_BATCH_DONE, C_CEILING_FINAL, err);
    return go(r, EV_BATCH_DONE, C_MORE_STEPS, err);
}

static bool all_done(const Agentq__V1__RunState *s)
{
    for (size_t i = 0; i < s->n_pending; i++)
        if (!s->pending[i]->done)
            return false;
    return true;
}

/* Give a call that will not run its "not run" result. */
static aq_status not_run(Agentq__V1__PendingToolCall *c, const char *why, aq_err *err)
{
    char text[300];
    snprintf(text, sizeof(text), "not run: %s", why);
    Agentq__V1__ToolResultBlock *res = malloc(sizeof(*res));
    if (!res)
        return nomem(err);
    agentq__v1__tool_result_block__init(res);
    xfree(c->result);
    c->result = res;
    res->is_error = true;
    if (!set_str(&res->tool_use_id, c->id) || !PUSH(res->content, res->n_content, text_block(text)) ||
        !set_str(&c->record->outcome, "ceiling"))
        return nomem(err);
    c->done = true;
    return AQ_OK;
}

aq_status aq_run_next(aq_run *r, const aq_run_limits *lim, int64_t now, aq_run_action *act,
                      aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    char msg[256];
    aq_status st;
    memset(act, 0, sizeof(*act));
    bool late = lim->deadline_unix_ms > 0 && now >= lim->deadline_unix_ms;
    switch (s->phase) {
    case PH(NEED_MODEL):
        if (late || s->n_steps >= lim->max_steps) {
            const char *ceiling = late ? "deadline" : "max_steps";
            if (lim->ceiling_final)
                st = enter_final(r, ceiling, EV_NEXT, late ? C_DEADLINE_FINAL : C_STEPS_FINAL, err);
            else {
                if (late)
                    snprintf(msg, sizeof(msg), "the run's deadline passed after %zu steps",
                             s->n_steps);
                else
                    snprintf(msg, sizeof(msg), "max_steps (%u) reached", lim->max_steps);
                st = fail_at(r, ceiling, msg, EV_NEXT, late ? C_DEADLINE_FAIL : C_STEPS_FAIL, err);
            }
            if (st != AQ_OK)
                return st;
            return aq_run_next(r, lim, now, act, err);
        }
        act->kind = AQ_RUN_CALL_MODEL;
        break;
    case PH(TOOLS_PENDING):
        if (late) {
            if (!lim->ceiling_final) {
                snprintf(msg, sizeof(msg), "the run's deadline passed with %zu tool calls to make",
                         s->n_pending);
                if ((st = fail_at(r, "deadline", msg, EV_NEXT, C_DEADLINE_FAIL, err)) != AQ_OK)
                    return st;
                return aq_run_next(r, lim, now, act, err);
            }
            if (!*s->ceiling && !set_str(&s->ceiling, "deadline"))
                return nomem(err);
            for (size_t i = 0; i < s->n_pending; i++)
                if (!s->pending[i]->done &&
                    (st = not_run(s->pending[i], "the run's deadline passed", err)) != AQ_OK)
                    return st;
        }
        if (all_done(s)) { /* only after the deadline: a batch completes when applied */
            if ((st = finish_batch(r, now, err)) != AQ_OK)
                return st;
            return aq_run_next(r, lim, now, act, err);
        }
        act->kind = AQ_RUN_DISPATCH_TOOLS;
        for (size_t i = 0; i < s->n_pending && act->n_calls < AQ_RUN_MAX_CALLS_PER_TURN; i++)
            if (!s->pending[i]->done)
                act->calls[act->n_calls++] = s->pending[i];
        return AQ_OK;
    case PH(NEED_FINAL):
        act->kind = AQ_RUN_CALL_FINAL;
        act->tools_disabled = true;
        break;
    case PH(DONE):
        act->kind = AQ_RUN_DONE;
        return AQ_OK;
    case PH(FAILED):
        act->kind = AQ_RUN_FAIL;
        act->fail_status = AQ_STEP_LIMIT;
        for (int i = 0; i < AQ__STATUS_COUNT; i++)
            if (s->error && strcmp(aq_status_class((aq_status)i), s->error->class_) == 0)
                act->fail_status = (aq_status)i;
        act->fail_message = s->error ? s->error->message : "";
        return AQ_OK;
    default:
        return aq_err_set(err, AQ_INVALID_ARG, "run %s: unknown phase %d", s->task_id,
                          (int)s->phase);
    }
    act->messages = s->conversation;
    act->n_messages = s->n_conversation;
    act->step = (uint32_t)s->n_steps + 1;
    return AQ_OK;
}

static Agentq__V1__StepRecord *step_record(const aq_run_answer *a, uint32_t step, bool final)
{
    Agentq__V1__StepRecord *rec = malloc(sizeof(*rec));
    Agentq__V1__Usage *u = malloc(sizeof(*u));
    if (!rec || !u) {
        free(rec);
        free(u);
        return NULL;
    }
    agentq__v1__step_record__init(rec);
    agentq__v1__usage__init(u);
    rec->usage = u;
    u->input_tokens = a->input_tokens;
    u->output_tokens = a->output_tokens;
    u->cache_creation_input_tokens = a->cache_creation_input_tokens;
    u->cache_read_input_tokens = a->cache_read_input_tokens;
    rec->step = step;
    rec->cost_micro_usd = a->cost_micro_usd;
    rec->latency_ms = a->latency_ms;
    rec->cache_hit = a->cache_hit;
    rec->final_at_ceiling = final;
    if (!set_str(&rec->model, a->model) || !set_str(&rec->stop_reason, a->stop_reason) ||
        !set_str(&rec->route_rule, a->route_rule)) {
        xfree(rec);
        return NULL;
    }
    return rec;
}

static Agentq__V1__PendingToolCall *pending_call(const Agentq__V1__ToolUseBlock *u)
{
    Agentq__V1__PendingToolCall *c = malloc(sizeof(*c));
    Agentq__V1__ToolCallRecord *rec = malloc(sizeof(*rec));
    if (!c || !rec) {
        free(c);
        free(rec);
        return NULL;
    }
    agentq__v1__pending_tool_call__init(c);
    agentq__v1__tool_call_record__init(rec);
    c->record = rec;
    if (!set_str(&c->id, u->id) || !set_str(&c->name, u->name) ||
        !set_str(&c->input_json, u->input_json) || !set_str(&rec->id, u->id) ||
        !set_str(&rec->name, u->name)) {
        xfree(c);
        return NULL;
    }
    return c;
}

aq_status aq_run_apply_answer(aq_run *r, const aq_run_limits *lim, const aq_run_answer *a,
                              int64_t now, aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    bool final = s->phase == PH(NEED_FINAL);
    char msg[300];
    if (s->phase != PH(NEED_MODEL) && !final)
        return aq_err_set(err, AQ_INVALID_ARG, "run %s: a model answer in phase %s", s->task_id,
                          aq_run_phase_name(s->phase));
    size_t n_uses = 0;
    for (size_t i = 0; i < a->n_content; i++) {
        const Agentq__V1__ContentBlock *b = a->content[i];
        if (b->block_case != AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE)
            continue;
        if (!b->tool_use || !b->tool_use->id || !*b->tool_use->id)
            return aq_err_set(err, AQ_INVALID_ARG, "run %s: a tool_use block without an id",
                              s->task_id);
        n_uses++;
    }

    /* the step and the sums */
    Agentq__V1__StepRecord *rec = step_record(a, (uint32_t)s->n_steps + 1, final);
    if (!PUSH(s->steps, s->n_steps, rec))
        return nomem(err);
    s->usage->input_tokens += a->input_tokens;
    s->usage->output_tokens += a->output_tokens;
    s->usage->cache_creation_input_tokens += a->cache_creation_input_tokens;
    s->usage->cache_read_input_tokens += a->cache_read_input_tokens;
    s->cost_micro_usd += a->cost_micro_usd;
    s->cost_unknown = s->cost_unknown || a->cost_unknown;
    s->llm_latency_ms += a->latency_ms;
    s->updated_unix_ms = now;
    if (!set_str(&s->model, a->model) || !set_str(&s->stop_reason, a->stop_reason))
        return nomem(err);

    /* the assistant turn (the final call's tool_use blocks are dropped: tools
     * were disabled, and an unanswered tool_use would break the session) */
    Agentq__V1__Message *turn = new_message("assistant");
    if (!turn)
        return nomem(err);
    for (size_t i = 0; i < a->n_content; i++) {
        if (final && a->content[i]->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE)
            continue;
        if (!PUSH(turn->blocks, turn->n_blocks, xclone(&a->content[i]->base))) {
            xfree(turn);
            return nomem(err);
        }
    }
    if (turn->n_blocks == 0) {
        xfree(turn); /* the API refuses an empty assistant turn in a later request */
        turn = NULL;
    } else if (!PUSH(s->conversation, s->n_conversation, turn))
        return nomem(err);

    if (final || n_uses == 0) {
        for (size_t i = 0; turn && i < turn->n_blocks; i++)
            if (!PUSH(s->final_content, s->n_final_content, xclone(&turn->blocks[i]->base)))
                return nomem(err);
        return go(r, EV_ANSWER, final ? C_FINAL_ANSWER : C_NO_TOOL_USE, err);
    }

    /* tool calls: which run */
    bool last_step = s->n_steps >= lim->max_steps;
    uint32_t left = lim->max_tool_calls > s->tool_calls ? lim->max_tool_calls - s->tool_calls : 0;
    if (!lim->ceiling_final && last_step) {
        snprintf(msg, sizeof(msg), "max_steps (%u) reached with the model still calling tools",
                 lim->max_steps);
        return fail_at(r, "max_steps", msg, EV_ANSWER, C_LAST_STEP_FAIL, err);
    }
    if (!lim->ceiling_final && n_uses > left) {
        snprintf(msg, sizeof(msg), "max_tool_calls (%u) reached: the model asked for %zu more "
                 "tool calls with %u left", lim->max_tool_calls, n_uses, left);
        return fail_at(r, "max_tool_calls", msg, EV_ANSWER, C_TOOLS_OVER_FAIL, err);
    }
    if (last_step && !set_str(&s->ceiling, "max_steps"))
        return nomem(err);
    if (n_uses > left && !*s->ceiling && !set_str(&s->ceiling, "max_tool_calls"))
        return nomem(err);
    aq_status st;
    for (size_t i = 0; i < turn->n_blocks; i++) {
        const Agentq__V1__ContentBlock *b = turn->blocks[i];
        if (b->block_case != AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE)
            continue;
        Agentq__V1__PendingToolCall *c = pending_call(b->tool_use);
        if (!PUSH(s->pending, s->n_pending, c))
            return nomem(err);
        if (s->n_pending > AQ_RUN_MAX_CALLS_PER_TURN) {
            snprintf(msg, sizeof(msg), "more than %d tool calls in one answer",
                     AQ_RUN_MAX_CALLS_PER_TURN);
            if ((st = not_run(c, msg, err)) != AQ_OK)
                return st;
        } else if (left == 0) {
            snprintf(msg, sizeof(msg), "the run's tool call limit (max_tool_calls = %u) is reached",
                     lim->max_tool_calls);
            if ((st = not_run(c, msg, err)) != AQ_OK)
                return st;
        } else {
            left--;
            s->tool_calls++;
        }
    }
    if ((st = go(r, EV_ANSWER, C_TOOL_USE, err)) != AQ_OK)
        return st;
    return all_done(s) ? finish_batch(r, now, err) : AQ_OK;
}

aq_status aq_run_apply_tool_result(aq_run *r, const aq_run_tool_result *res, int64_t now,
                                   aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    if (s->phase != PH(TOOLS_PENDING))
        return aq_err_set(err, AQ_INVALID_ARG, "run %s: a tool result in phase %s", s->task_id,
                          aq_run_phase_name(s->phase));
    Agentq__V1__PendingToolCall *c = NULL;
    for (size_t i = 0; i < s->n_pending && !c; i++)
        if (res->tool_use_id && strcmp(s->pending[i]->id, res->tool_use_id) == 0)
            c = s->pending[i];
    if (!c)
        return aq_err_set(err, AQ_NOT_FOUND, "run %s: no pending tool call %s", s->task_id,
                          res->tool_use_id ? res->tool_use_id : "(null)");
    if (c->done)
        return AQ_OK;
    Agentq__V1__ToolResultBlock *tr = malloc(sizeof(*tr));
    if (!tr)
        return nomem(err);
    agentq__v1__tool_result_block__init(tr);
    xfree(c->result);
    c->result = tr;
    tr->is_error = res->is_error;
    if (!set_str(&tr->tool_use_id, c->id))
        return nomem(err);
    for (size_t i = 0; i < res->n_content; i++)
        if (!PUSH(tr->content, tr->n_content, xclone(&res->content[i]->base)))
            return nomem(err);
    if (res->n_content == 0 && res->text && *res->text &&
        !PUSH(tr->content, tr->n_content, text_block(res->text)))
        return nomem(err);
    const char *outcome = res->outcome ? res->outcome : res->is_error ? "error" : "ok";
    if (!set_str(&c->record->outcome, outcome))
        return nomem(err);
    c->record->latency_ms = res->latency_ms;
    c->record->attempts = res->attempts;
    if (strcmp(outcome, "schema_violation") == 0)
        s->schema_violations++;
    c->done = true;
    s->updated_unix_ms = now;
    return all_done(s) ? finish_batch(r, now, err) : AQ_OK;
}

aq_status aq_run_fail(aq_run *r, aq_status st, const char *message, int64_t now, aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    if (s->phase == PH(DONE))
        return aq_err_set(err, AQ_INVALID_ARG, "run %s is done: it cannot fail", s->task_id);
    if (!s->error) {
        s->error = malloc(sizeof(*s->error));
        if (!s->error)
            return nomem(err);
        agentq__v1__error__init(s->error);
    }
    if (!set_str(&s->error->class_, aq_status_class(st)) || !set_str(&s->error->message, message))
        return nomem(err);
    s->updated_unix_ms = now;
    return go(r, EV_FAIL, C_ANY, err);
}

aq_status aq_run_fill_result(aq_run *r, Agentq__V1__Result *res, Agentq__V1__Usage *usage_mem,
                             aq_err *err)
{
    Agentq__V1__RunState *s = r->st;
    if (s->phase != PH(DONE) && s->phase != PH(FAILED))
        return aq_err_set(err, AQ_INVALID_ARG, "run %s is not finished (phase %s)", s->task_id,
                          aq_run_phase_name(s->phase));
    aq_buf text;
    aq_buf_init(&text, SIZE_MAX);
    for (size_t i = 0; i < s->n_final_content; i++) {
        const Agentq__V1__ContentBlock *b = s->final_content[i];
        if (b->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT && b->text &&
            aq_buf_append_str(&text, b->text->text) != AQ_OK) {
            aq_buf_free(&text);
            return nomem(err);
        }
    }
    if (aq_buf_append(&text, "", 0) != AQ_OK) {
        aq_buf_free(&text);
        return nomem(err);
    }
    free(r->output);
    r->output = aq_buf_take(&text, NULL);
    res->status = s->phase == PH(DONE) ? AGENTQ__V1__STATUS__STATUS_COMPLETED
                                       : AGENTQ__V1__STATUS__STATUS_FAILED;
    res->output = r->output;
    res->content = s->final_content;
    res->n_content = s->n_final_content;
    res->stop_reason = s->stop_reason;
    res->model = s->model;
    *usage_mem = *s->usage;
    res->usage = usage_mem;
    res->cost_micro_usd = s->cost_micro_usd;
    res->cost_unknown = s->cost_unknown;
    res->llm_latency_ms = s->llm_latency_ms;
    res->steps = (uint32_t)s->n_steps;
    res->tool_calls = s->tool_calls;
    res->step_log = s->steps;
    res->n_step_log = s->n_steps;
    res->transcript_key = s->task_id;
    res->session_id = s->session_id;
    res->error = s->phase == PH(FAILED) ? s->error : NULL;
    return AQ_OK;
}

aq_status aq_run_idempotency_key(const char *task_id, const char *tool_use_id, char *out, size_t n,
                                 aq_err *err)
{
    int len = snprintf(out, n, "%s:%s", task_id, tool_use_id);
    if (len < 0 || (size_t)len >= n)
        return aq_err_set(err, AQ_TOO_BIG, "idempotency key for %s is over %zu bytes", tool_use_id,
                          n);
    return AQ_OK;
}
