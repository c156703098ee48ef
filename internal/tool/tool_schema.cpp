/* The C shim over valijson (tool_schema.h). Every entry point catches every
 * exception: nothing C++ leaves this file. */
extern "C" {
#include "core/status.h"
#include "core/text.h"
}
#include "tool_schema.h"

#include <cstring>
#include <new>
#include <regex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#define VALIJSON_USE_EXCEPTIONS 1
#include <nlohmann/json.hpp>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

/* The official draft-07 metaschema (draft-07-schema.json), as a string
 * literal generated at build time (CMakeLists.txt). */
#include "tool_metaschema.inc"

using json = nlohmann::json;

/* Violations named in one message; the rest are counted. */
#define MAX_REPORTED 3

struct aq_tool_schema {
    json doc; /* the schema, for naming the expected type in messages */
    valijson::Schema schema;
    bool has_regex; /* "pattern", "patternProperties" or "format" somewhere */
};

namespace {

struct too_deep : std::runtime_error {
    too_deep() : std::runtime_error("too deep") {}
};

/* Parse with nesting bounded by AQ_TOOL_SCHEMA_MAX_DEPTH (nlohmann's
 * parser callback sees each value's depth as it is read). */
aq_status parse_json(const char *text, size_t len, size_t cap, const char *what, json &out,
                     aq_err *err)
{
    if (len > cap)
        return aq_err_set(err, AQ_TOO_BIG, "%s is %zu bytes, cap %zu", what, len, cap);
    try {
        out = json::parse(text, text + len, [](int depth, json::parse_event_t, json &) {
            if (depth > AQ_TOOL_SCHEMA_MAX_DEPTH)
                throw too_deep();
            return true;
        });
    } catch (const too_deep &) {
        return aq_err_set(err, AQ_TOO_BIG, "%s nests deeper than %d levels", what,
                          AQ_TOOL_SCHEMA_MAX_DEPTH);
    } catch (const json::parse_error &e) {
        /* nlohmann's messages read "[json.exception.parse_error.101] parse
         * error at line 1, column 2: ..."; drop the bracketed id. */
        std::string m = e.what();
        size_t p = m.find("] ");
        if (p != std::string::npos)
            m.erase(0, p + 2);
        p = m.find("; last read:"); /* echoes the input's bytes */
        if (p != std::string::npos)
            m.erase(p);
        return aq_err_set(err, AQ_INVALID_ARG, "%s is not JSON: %s", what, m.c_str());
    }
    return AQ_OK;
}

const char *type_name(const json &v)
{
    if (v.is_number_integer())
        return "integer";
    if (v.is_number())
        return "number";
    if (v.is_boolean())
        return "boolean";
    return v.type_name(); /* null, object, array, string */
}

/* RFC 6901 escaping of one reference token. */
std::string pointer_token(const std::string &t)
{
    std::string out;
    for (char c : t) {
        if (c == '~')
            out += "~0";
        else if (c == '/')
            out += "~1";
        else
            out += c;
    }
    return out;
}

/* Follow an internal "$ref": "#/..." (a few hops at most). */
const json *deref(const json &root, const json *node)
{
    for (int hops = 0; node && node->is_object() && hops < 8; hops++) {
        auto ref = node->find("$ref");
        if (ref == node->end() || !ref->is_string())
            break;
        const std::string &r = ref->get_ref<const std::string &>();
        if (r == "#") {
            node = &root;
            continue;
        }
        if (r.compare(0, 2, "#/") != 0)
            return nullptr;
        try {
            node = &root.at(json::json_pointer(r.substr(1)));
        } catch (const std::exception &) {
            return nullptr;
        }
    }
    return node;
}

/* The subschema that applies at an instance path, following "properties"
 * and "items" only (enough to name the expected type of a simple schema);
 * NULL when it cannot be told. */
const json *subschema_at(const json &root, const json &instance,
                         const std::vector<std::string> &path)
{
    const json *s = deref(root, &root);
    const json *v = &instance;
    for (const std::string &tok : path) {
        if (!s || !s->is_object() || !v)
            return nullptr;
        if (v->is_object()) {
            auto props = s->find("properties");
            if (props == s->end() || !props->is_object() || !props->contains(tok))
                return nullptr;
            s = deref(root, &(*props)[tok]);
            v = &(*v)[tok];
        } else if (v->is_array()) {
            size_t i = std::stoul(tok);
            auto items = s->find("items");
            if (items == s->end())
                return nullptr;
            if (items->is_array())
                s = i < items->size() ? deref(root, &(*items)[i]) : nullptr;
            else
                s = deref(root, &*items);
            v = i < v->size() ? &(*v)[i] : nullptr;
        } else {
            return nullptr;
        }
    }
    return s;
}

/* valijson's context ["<root>", "[city]", "[0]"] as path tokens. */
std::vector<std::string> context_path(const std::vector<std::string> &context)
{
    std::vector<std::string> path;
    for (size_t i = 1; i < context.size(); i++) {
        const std::string &c = context[i];
        if (c.size() >= 2 && c.front() == '[' && c.back() == ']')
            path.push_back(c.substr(1, c.size() - 2));
        else
            path.push_back(c);
    }
    return path;
}

bool starts_with(const std::string &s, const char *prefix)
{
    return s.compare(0, std::strlen(prefix), prefix) == 0;
}

/* valijson's sentence ("Missing required property 'units'.") in the style
 * of this project's messages. */
std::string describe(const valijson::ValidationResults::Error &e, const json &schema,
                     const json &instance)
{
    std::vector<std::string> path = context_path(e.context);
    const std::string &d = e.description;
    std::string what;
    if (starts_with(d, "Missing required property '") && d.size() > 29) {
        what = "missing required property \"" + d.substr(27, d.size() - 29) + "\"";
    } else if (starts_with(d, "Value type not permitted")) {
        const json *value = &instance;
        try {
            std::string ptr;
            for (const std::string &t : path)
                ptr += "/" + pointer_token(t);
            value = &instance.at(json::json_pointer(ptr));
        } catch (const std::exception &) {
            value = nullptr;
        }
        const json *sub = nullptr;
        try {
            sub = value ? subschema_at(schema, instance, path) : nullptr;
        } catch (const std::exception &) {
            sub = nullptr;
        }
        const json *type = nullptr;
        if (sub && sub->is_object() && sub->contains("type"))
            type = &(*sub)["type"];
        if (type && type->is_string()) {
            what = "expected " + type->get<std::string>();
        } else if (type && type->is_array()) {
            what = "expected one of";
            for (const json &t : *type)
                if (t.is_string())
                    what += " " + t.get<std::string>();
        } else {
            what = "value type not permitted by the schema";
        }
        if (value)
            what += std::string(", got ") + type_name(*value);
    } else if (starts_with(d, "Failed to match against any enum values")) {
        what = "value is not one of the enum values";
    } else {
        what = d;
        /* std::to_string(7.0) is "7.000000". */
        for (size_t z; (z = what.find(".000000")) != std::string::npos;)
            what.erase(z, 7);
        if (!what.empty() && what.back() == '.')
            what.pop_back();
        if (!what.empty() && what[0] >= 'A' && what[0] <= 'Z')
            what[0] = (char)(what[0] - 'A' + 'a');
    }
    if (path.empty())
        return what;
    std::string ptr;
    for (const std::string &t : path)
        ptr += "/" + pointer_token(t);
    return ptr + ": " + what;
}

/* Errors that only say "a child failed" (its own errors are listed). */
bool is_wrapper(const std::string &d)
{
    return starts_with(d, "Failed to validate against schema associated with property name") ||
           starts_with(d, "Failed to validate item #") ||
           starts_with(d, "Failed to validate against additional properties schema") ||
           starts_with(d, "Failed to validate against schema associated with pattern");
}

/* Validate `instance` against `schema`; on failure the message lists the
 * violations, after `prefix`. */
aq_status run_validation(const valijson::Schema &schema, const json &schema_doc,
                         const json &instance, const char *prefix, aq_err *err)
{
    valijson::Validator validator;
    valijson::ValidationResults results;
    valijson::adapters::NlohmannJsonAdapter target(instance);
    if (validator.validate(schema, target, &results))
        return AQ_OK;
    std::string msg;
    size_t shown = 0, more = 0;
    valijson::ValidationResults::Error e;
    std::vector<valijson::ValidationResults::Error> all;
    while (results.popError(e))
        all.push_back(e);
    bool only_wrappers = true;
    for (const auto &x : all)
        if (!is_wrapper(x.description))
            only_wrappers = false;
    for (const auto &x : all) {
        if (!only_wrappers && is_wrapper(x.description))
            continue;
        if (shown == MAX_REPORTED) {
            more++;
            continue;
        }
        if (shown)
            msg += "; ";
        msg += describe(x, schema_doc, instance);
        shown++;
    }
    if (more)
        msg += "; (and " + std::to_string(more) + " more)";
    return aq_err_set(err, AQ_INVALID_ARG, "%s%s", prefix, msg.c_str());
}

const json &metaschema_doc()
{
    static const json doc = json::parse(AQ_TOOL_METASCHEMA_DRAFT07);
    return doc;
}

/* Built once (C++11 makes the initialisation thread-safe); the text is
 * ours, so a failure here is a build defect (it throws, and the caller's
 * catch reports it). */
struct metaschema_holder {
    valijson::Schema schema;
    metaschema_holder()
    {
        valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
        valijson::adapters::NlohmannJsonAdapter a(metaschema_doc());
        parser.populateSchema(a, schema);
    }
};

const valijson::Schema &metaschema()
{
    static const metaschema_holder holder;
    return holder.schema;
}

/* What check_schema learns on its way. */
struct schema_walk {
    const json *root;
    bool has_regex = false;                /* "pattern", "patternProperties", "format" */
    std::vector<std::pair<const json *, std::string>> nodes; /* every subschema, its pointer */
};

/* The subschema a "$ref" names: only "#" and "#/json/pointer" inside this
 * document (valijson would otherwise try to fetch, or recurse forever on a
 * relative reference it resolves to itself). */
const json *ref_target(const json &root, const json &ref, const std::string &where)
{
    const std::string *r = ref.is_string() ? &ref.get_ref<const std::string &>() : nullptr;
    if (!r || (*r != "#" && r->compare(0, 2, "#/") != 0))
        throw std::invalid_argument(where + ": only references inside the schema (\"#/...\") "
                                    "are supported");
    if (*r == "#")
        return &root;
    try {
        return &root.at(json::json_pointer(r->substr(1)));
    } catch (const std::exception &) {
        throw std::invalid_argument(where + ": reference " + *r + " names nothing in the schema");
    }
}

/* Walks schema positions only (not "enum", "const", "default", "examples",
 * whose objects are data), checking what valijson would only find out at
 * validation or not at all:
 *  - every regular expression ("pattern" values, "patternProperties" keys)
 *    compiles (valijson compiles them when an input reaches them);
 *  - every "$ref" points inside the schema, and "$id" appears only at the
 *    root (a nested one would change what "#/..." means);
 * and records every subschema for check_cycles. */
void check_schema(const json &s, const std::string &at, int depth, schema_walk &w)
{
    if (!s.is_object() || depth > AQ_TOOL_SCHEMA_MAX_DEPTH)
        return;
    w.nodes.emplace_back(&s, at);
    auto compile = [&](const std::string &re, const std::string &where) {
        try {
            std::regex r(re, std::regex::ECMAScript);
        } catch (const std::regex_error &e) {
            throw std::invalid_argument(where + ": not a valid regular expression: " + e.what());
        }
    };
    for (auto it = s.begin(); it != s.end(); ++it) {
        const std::string &k = it.key();
        const json &v = it.value();
        std::string here = at + "/" + pointer_token(k);
        if (k == "format")
            w.has_regex = true;
        if (k == "$ref") {
            ref_target(*w.root, v, here);
        } else if (k == "$id" && depth > 0) {
            throw std::invalid_argument(here + ": \"$id\" is supported at the root only");
        } else if (k == "pattern" && v.is_string()) {
            w.has_regex = true;
            compile(v.get<std::string>(), here);
        } else if ((k == "properties" || k == "definitions" || k == "patternProperties" ||
                    k == "dependencies") &&
                   v.is_object()) {
            for (auto p = v.begin(); p != v.end(); ++p) {
                if (k == "patternProperties") {
                    w.has_regex = true;
                    compile(p.key(), here + "/" + pointer_token(p.key()));
                }
                check_schema(p.value(), here + "/" + pointer_token(p.key()), depth + 1, w);
            }
        } else if ((k == "items" || k == "allOf" || k == "anyOf" || k == "oneOf") &&
                   v.is_array()) {
            for (size_t i = 0; i < v.size(); i++)
                check_schema(v[i], here + "/" + std::to_string(i), depth + 1, w);
        } else if (k == "items" || k == "additionalItems" || k == "additionalProperties" ||
                   k == "contains" || k == "propertyNames" || k == "if" || k == "then" ||
                   k == "else" || k == "not") {
            check_schema(v, here, depth + 1, w);
        }
    }
}

/* The subschemas that apply to the same instance as `s` (without going
 * into a property or an item): "$ref", allOf / anyOf / oneOf, not,
 * if / then / else, and the schema form of "dependencies". */
void same_instance_edges(const json &root, const json &s, std::vector<const json *> &out)
{
    out.clear();
    if (!s.is_object())
        return;
    for (auto it = s.begin(); it != s.end(); ++it) {
        const std::string &k = it.key();
        const json &v = it.value();
        if (k == "$ref")
            out.push_back(ref_target(root, v, ""));
        else if ((k == "allOf" || k == "anyOf" || k == "oneOf") && v.is_array())
            for (const json &e : v)
                out.push_back(&e);
        else if (k == "not" || k == "if" || k == "then" || k == "else")
            out.push_back(&v);
        else if (k == "dependencies" && v.is_object())
            for (auto d = v.begin(); d != v.end(); ++d)
                if (d.value().is_object())
                    out.push_back(&d.value());
    }
}

/* A cycle among those edges ({"$ref": "#"} at the root, two definitions
 * naming each other, {"allOf": [{"$ref": "#"}]}) makes valijson recurse
 * without end on any input: refused. Recursion through a property or an
 * item is fine (the input's depth bounds it). Iterative DFS, three colours. */
void check_cycles(const schema_walk &w)
{
    std::unordered_map<const json *, int> colour; /* 0 new, 1 on the path, 2 done */
    std::unordered_map<const json *, const std::string *> where;
    for (const auto &n : w.nodes)
        where[n.first] = &n.second;
    struct frame {
        const json *node;
        std::vector<const json *> next;
        size_t i;
    };
    for (const auto &n : w.nodes) {
        if (colour[n.first])
            continue;
        std::vector<frame> stack;
        stack.push_back({n.first, {}, 0});
        same_instance_edges(*w.root, *n.first, stack.back().next);
        colour[n.first] = 1;
        while (!stack.empty()) {
            frame &f = stack.back();
            if (f.i == f.next.size()) {
                colour[f.node] = 2;
                stack.pop_back();
                continue;
            }
            const json *t = f.next[f.i++];
            int c = colour[t];
            if (c == 1) {
                auto p = where.find(t);
                throw std::invalid_argument(
                    (p != where.end() && !p->second->empty() ? *p->second : std::string("(root)")) +
                    ": references loop back here without going into a property or an item");
            }
            if (c == 0) {
                colour[t] = 1;
                stack.push_back({t, {}, 0});
                same_instance_edges(*w.root, *t, stack.back().next);
            }
        }
    }
}

/* libstdc++'s std::regex (valijson's "pattern" and "format" checks)
 * recurses once per character matched: a long string would overflow the
 * stack. Where the schema has regexes, no string of the input (value or
 * property name) may be longer than AQ_TOOL_REGEX_MAX_CHARS. */
bool find_long_string(const json &v, std::string &at, size_t &len)
{
    if (v.is_string()) {
        len = v.get_ref<const std::string &>().size();
        return len > AQ_TOOL_REGEX_MAX_CHARS;
    }
    if (v.is_array()) {
        for (size_t i = 0; i < v.size(); i++) {
            std::string sub = at + "/" + std::to_string(i);
            if (find_long_string(v[i], sub, len)) {
                at = sub;
                return true;
            }
        }
    } else if (v.is_object()) {
        for (auto it = v.begin(); it != v.end(); ++it) {
            std::string sub = at + "/" + pointer_token(it.key());
            len = it.key().size();
            if (len > AQ_TOOL_REGEX_MAX_CHARS || find_long_string(it.value(), sub, len)) {
                at = sub;
                return true;
            }
        }
    }
    return false;
}

/* aq_err_set cuts a long message at a byte: keep it valid UTF-8 (it goes
 * back to the model inside JSON). */
void fix_utf8(aq_err *err)
{
    if (!err)
        return;
    char tmp[AQ_ERR_MAX];
    aq_utf8_sanitize(err->msg, strnlen(err->msg, sizeof(err->msg)), tmp, sizeof(tmp));
    std::memcpy(err->msg, tmp, sizeof(tmp));
}

} // namespace

extern "C" aq_status aq_tool_schema_compile(const char *json_text, size_t len, aq_tool_schema **out,
                                            aq_err *err)
{
    aq_status st = AQ_OK;
    aq_tool_schema *ts = nullptr;
    try {
        ts = new aq_tool_schema();
        if ((st = parse_json(json_text, len, AQ_TOOL_SCHEMA_MAX_BYTES, "input_schema", ts->doc,
                             err)) != AQ_OK)
            goto out;
        if ((st = run_validation(metaschema(), metaschema_doc(), ts->doc,
                                 "input_schema is not a valid JSON Schema: ", err)) != AQ_OK)
            goto out;
        schema_walk w;
        w.root = &ts->doc;
        check_schema(ts->doc, "", 0, w);
        check_cycles(w);
        ts->has_regex = w.has_regex;
        {
            valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
            valijson::adapters::NlohmannJsonAdapter a(ts->doc);
            parser.populateSchema(a, ts->schema); /* no fetch function: remote $ref throws */
        }
    } catch (const std::bad_alloc &) {
        st = aq_err_set(err, AQ_NOMEM, "input_schema: out of memory");
    } catch (const std::exception &e) {
        st = aq_err_set(err, AQ_INVALID_ARG, "input_schema is not a valid JSON Schema: %s",
                        e.what());
    } catch (...) {
        st = aq_err_set(err, AQ_INVALID_ARG, "input_schema is not a valid JSON Schema");
    }
out:
    if (st == AQ_OK) {
        *out = ts;
    } else {
        delete ts;
        fix_utf8(err);
    }
    return st;
}

extern "C" aq_status aq_tool_schema_validate(const aq_tool_schema *schema, const char *input_json,
                                             size_t len, aq_err *err)
{
    aq_status st = AQ_OK;
    try {
        json input;
        if ((st = parse_json(input_json, len, AQ_TOOL_INPUT_MAX_BYTES, "input", input, err)) !=
            AQ_OK)
            goto out;
        std::string at;
        size_t n = 0;
        if (schema->has_regex && find_long_string(input, at, n)) {
            st = aq_err_set(err, AQ_INVALID_ARG,
                            "%s: string of %zu characters, longer than the %d a schema with "
                            "patterns or formats can check",
                            at.empty() ? "(root)" : at.c_str(), n, AQ_TOOL_REGEX_MAX_CHARS);
            goto out;
        }
        st = run_validation(schema->schema, schema->doc, input, "", err);
    } catch (const std::bad_alloc &) {
        st = aq_err_set(err, AQ_NOMEM, "input validation: out of memory");
    } catch (const std::exception &e) {
        st = aq_err_set(err, AQ_INVALID_ARG, "input validation failed: %s", e.what());
    } catch (...) {
        st = aq_err_set(err, AQ_INVALID_ARG, "input validation failed");
    }
out:
    if (st != AQ_OK)
        fix_utf8(err);
    return st;
}

extern "C" void aq_tool_schema_destroy(aq_tool_schema *schema)
{
    delete schema;
}

extern "C" aq_status aq_tool_schema_check(const char *schema_json, aq_err *err)
{
    aq_tool_schema *schema = NULL;
    aq_status st = aq_tool_schema_compile(schema_json, strlen(schema_json), &schema, err);
    aq_tool_schema_destroy(schema);
    if (st == AQ_INVALID_ARG || st == AQ_TOO_BIG) {
        if (err)
            err->status = AQ_TASK_INVALID;
        return AQ_TASK_INVALID;
    }
    return st;
}
