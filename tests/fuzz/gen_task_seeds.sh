#!/usr/bin/env bash
# Regenerates the valid-task seeds of corpus/task_decode/ from protobuf text
# format with `protoc --encode` (the bytes are committed; run this only to
# change them). The hand-made edge cases (raw-*) are not generated here.
#   usage: tests/fuzz/gen_task_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fuzz/corpus/task_decode
mkdir -p "$out"
enc() { protoc --encode=agentq.v1.Task -I schemas schemas/agentq/v1/task.proto > "$out/$1"; }

enc valid-minimal <<'T'
id: "t1" type: "summarize" prompt: "Summarize: the quick brown fox."
T
enc valid-full <<'T'
id: "order-42.summary_v=2" type: "summarize-long" tenant: "acme" model: "claude-haiku-4-5"
system: "You are terse." prompt: "Summarize: caf\303\251 \342\202\254 \360\237\230\200 end"
max_tokens: 256 temperature: 0.25 stop_sequences: "\n\nHuman:" stop_sequences: "END"
metadata { key: "trace" value: "abc123" } metadata { key: "k\303\251y" value: "" }
deadline_unix_ms: 1893456000000 created_unix_ms: 1700000000000
T
enc valid-messages <<'T'
id: "conv-1" type: "chat"
messages { role: "user" content: "Hello" }
messages { role: "assistant" content: "Hi. What can I do?" }
messages { role: "user" content: "Classify: spam or ham?" }
max_tokens: 64000 temperature: 0
T
enc valid-temperature-one <<'T'
id: "a" type: "b" prompt: "p" temperature: 1 max_tokens: 1
T
enc invalid-prompt-and-messages <<'T'
id: "t2" type: "x" prompt: "p" messages { role: "user" content: "c" }
T
enc invalid-id <<'T'
id: "..bad/id" type: "x" prompt: "p"
T
enc invalid-type <<'T'
id: "t3" type: "a.b" prompt: "p"
T
enc invalid-first-message-assistant <<'T'
id: "t4" type: "x" messages { role: "assistant" content: "c" }
T
enc invalid-temperature <<'T'
id: "t5" type: "x" prompt: "p" temperature: 2.5
T
enc invalid-max-tokens <<'T'
id: "t6" type: "x" prompt: "p" max_tokens: 4294967295
T
enc invalid-negative-deadline <<'T'
id: "t7" type: "x" prompt: "p" deadline_unix_ms: -1
T
enc invalid-empty-stop <<'T'
id: "t8" type: "x" prompt: "p" stop_sequences: ""
T
enc invalid-no-prompt <<'T'
id: "t9" type: "x" system: "only a system prompt"
T
# NUL bytes inside strings (proto3 allows them; protobuf-c would cut the string there).
enc nul-in-id <<'T'
id: "X\0tail" type: "x" prompt: "p"
T
enc nul-in-prompt <<'T'
id: "t10" type: "x" prompt: "before\0after"
T
enc nul-in-message <<'T'
id: "t11" type: "x" messages { role: "user" content: "q" } messages { role: "assistant" content: "\0" }
T
enc nul-in-metadata <<'T'
id: "t12" type: "x" prompt: "p" metadata { key: "k\0" value: "v" }
T
enc nul-in-block <<'T'
id: "t13" type: "x" messages { role: "user" blocks { tool_result { tool_use_id: "a" content { text { text: "x\0y" } } } } }
T
# Nesting over the wire check's bound (content blocks inside tool results).
nest='text { text: "deep" }'
for _ in $(seq 40); do nest="tool_result { tool_use_id: \"t\" content { $nest } }"; done
enc nested-too-deep <<T
id: "t14" type: "x" messages { role: "user" blocks { $nest } }
# Agent runs: content blocks and tools.
enc valid-tool-conversation <<'T'
id: "run-1" type: "agent" tenant: "acme" system: "Use the tools."
messages { role: "user" blocks { text { text: "Weather where this was taken?" } }
           blocks { image { source { media_type: "image/png" data: "\211PNG\r\n\032\n\000\000" } } }
           blocks { document { source { url: "https://example.com/r.pdf" } title: "Report" } } }
messages { role: "assistant" blocks { text { text: "Checking." } }
           blocks { tool_use { id: "toolu_1" name: "get_weather" input_json: "{\"city\":\"Paris\"}" } }
           blocks { tool_use { id: "toolu_2" name: "get_time" input_json: "{}" } } }
messages { role: "user"
           blocks { tool_result { tool_use_id: "toolu_1" content { text { text: "18C" } } } }
           blocks { tool_result { tool_use_id: "toolu_2" is_error: true } }
           blocks { document { source { media_type: "text/plain" data: "notes" } } } }
tools { name: "get_weather" description: "Weather of a city"
        input_schema_json: "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}" }
tools { name: "get_time" input_schema_json: "{\"type\":\"object\"}" }
tool_choice { type: TOOL_CHOICE_TYPE_ANY disable_parallel_tool_use: true }
max_steps: 10 max_tool_calls: 20 ceiling_action: CEILING_ACTION_FINAL session_id: "sess-1"
T
enc invalid-tool-result-unanswered <<'T'
id: "run-2" type: "agent"
messages { role: "user" blocks { text { text: "hi" } } }
messages { role: "assistant" blocks { tool_use { id: "toolu_1" name: "f" input_json: "{}" } } }
messages { role: "user" blocks { text { text: "first" } } blocks { tool_result { tool_use_id: "toolu_9" } } }
tools { name: "f" input_schema_json: "{\"type\":\"object\"}" }
T
enc invalid-tool-use-in-user-turn <<'T'
id: "run-3" type: "agent"
messages { role: "user" blocks { tool_use { id: "toolu_1" name: "f" input_json: "{}" } } }
tools { name: "f" input_schema_json: "{\"type\":\"object\"}" }
T
enc invalid-tool-bad-schema <<'T'
id: "run-4" type: "agent" prompt: "p"
tools { name: "f" input_schema_json: "{\"type\":\"string\"}" }
tools { name: "f" input_schema_json: "not json" }
T
enc invalid-image-media-type <<'T'
id: "run-5" type: "agent"
messages { role: "user" blocks { image { source { media_type: "image/bmp" data: "BM" url: "ftp://x" } } } }
T
enc invalid-nested-tool-result <<'T'
id: "run-6" type: "agent"
messages { role: "user" blocks { tool_result { tool_use_id: "a" content { tool_result { tool_use_id: "b" content { text { text: "deep" } } } } } } }
tools { name: "f" input_schema_json: "{\"type\":\"object\"}" }
T
enc invalid-tool-choice-unknown <<'T'
id: "run-7" type: "agent" prompt: "p" tool_choice { type: TOOL_CHOICE_TYPE_TOOL name: "missing" }
T
