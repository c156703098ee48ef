// Drives agentq-sim with the official Anthropic TypeScript SDK, set up as its
// README says (new Anthropic({apiKey, baseURL})). Run by
// tests/integration/sdk_conformance.sh, which starts two simulators:
//   SIM_URL       keys=SIM_KEY, retry_after=1, max_body_bytes=1MiB
//   SIM_529_URL   fault_529=1 (every valid request answered 529)
// Prints "ok - ..." per check; exits 1 if any failed.
import Anthropic from '@anthropic-ai/sdk';

const SIM_URL = process.env.SIM_URL;
const SIM_529_URL = process.env.SIM_529_URL;
const KEY = process.env.SIM_KEY;
const MODEL = 'claude-sonnet-4-5';

let failed = 0;
function check(cond, what, detail) {
  if (cond) {
    console.log(`ok - ${what}`);
  } else {
    failed++;
    console.log(`not ok - ${what}${detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  }
}
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function stats(url) {
  const r = await fetch(`${url}/sim/stats`);
  return r.json();
}

// An error the call must throw: its class, and the requests it took.
async function expectError(what, url, fn, cls, wantRequests) {
  const before = (await stats(url)).requests_total;
  let err = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  const took = (await stats(url)).requests_total - before;
  check(err instanceof cls, `${what}: ${cls.name}`, err ? `${err.constructor.name}: ${err.message}` : 'no error');
  if (wantRequests !== undefined) check(took === wantRequests, `${what}: ${wantRequests} request(s)`, `took ${took}`);
  return err;
}

const client = new Anthropic({ apiKey: KEY, baseURL: SIM_URL });

// --- messages.create: text
const params = { model: MODEL, max_tokens: 200, messages: [{ role: 'user', content: 'Hello, Claude' }] };
const msg = await client.messages.create(params);
check(msg.type === 'message' && msg.role === 'assistant' && msg.model === MODEL, 'create: a message');
check(msg.content[0].type === 'text' && msg.content[0].text.startsWith('echo: Hello, Claude'), 'create: the echo text',
  msg.content);
check(msg.stop_reason === 'end_turn' && msg.usage.output_tokens > 0 && msg.usage.input_tokens > 0, 'create: usage');
check(typeof msg._request_id === 'string' && msg._request_id.startsWith('req_'), 'create: _request_id from request-id');

// --- prefill: the answer continues the last assistant turn
const pre = await client.messages.create({
  ...params,
  messages: [...params.messages, { role: 'assistant', content: 'echo: Hello' }],
});
check('echo: Hello' + pre.content[0].text === msg.content[0].text, 'prefill: continues the assistant turn', pre.content);

// --- tool use round trip
const tools = [{
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}];
const convo = [{ role: 'user', content: 'What is the weather in Paris?' }];
let steps = 0, last;
for (;;) {
  last = await client.messages.create({ model: MODEL, max_tokens: 500, tools, messages: convo });
  if (last.stop_reason !== 'tool_use') break;
  steps++;
  const uses = last.content.filter((b) => b.type === 'tool_use');
  check(uses.length > 0 && uses.every((u) => u.name === 'get_weather' && typeof u.input.city === 'string'),
    `tools: step ${steps} calls get_weather with a city`, last.content);
  convo.push({ role: 'assistant', content: last.content });
  convo.push({ role: 'user', content: uses.map((u) => ({ type: 'tool_result', tool_use_id: u.id, content: 'sunny, 21C' })) });
  if (steps > 5) break;
}
check(steps === 2 && last.stop_reason === 'end_turn', 'tools: two tool_use steps, then end_turn', { steps, stop: last.stop_reason });
check(last.content[0].text.includes('Tool results: get_weather: sunny, 21C'), 'tools: the final answer echoes the results',
  last.content);

// --- messages.stream() with its helpers: same content and usage as create
{
  let streamed = '';
  const stream = client.messages.stream(params).on('text', (t) => { streamed += t; });
  const final = await stream.finalMessage();
  check(streamed === msg.content[0].text, "stream(): on('text') deltas add up to the create() text");
  check(eq(final.content, msg.content), 'stream(): finalMessage content = create() content', final.content);
  check(eq(final.usage, msg.usage) && final.stop_reason === msg.stop_reason && final.stop_sequence === msg.stop_sequence,
    'stream(): finalMessage usage and stop = create()', final.usage);
}
{ // tool_use blocks streamed as input_json_delta: the same inputs
  const tparams = { model: MODEL, max_tokens: 500, tools, messages: [{ role: 'user', content: 'Weather in Rome?' }] };
  const plain = await client.messages.create(tparams);
  const final = await client.messages.stream(tparams).finalMessage();
  check(plain.stop_reason === 'tool_use' && eq(final.content, plain.content) && eq(final.usage, plain.usage),
    'stream(): tool_use blocks (input_json_delta) = create()', { plain: plain.content, streamed: final.content });
}
{ // max_tokens and stop sequences end a stream as they end an answer
  const p = { ...params, max_tokens: 7, stop_sequences: ['zzz-not-there'] };
  const plain = await client.messages.create(p);
  const final = await client.messages.stream(p).finalMessage();
  check(eq(final.content, plain.content) && final.stop_reason === 'max_tokens' && eq(final.usage, plain.usage),
    'stream(): max_tokens cut = create()');
}

// --- stream: true, raw iteration: the API's event sequence
{
  const events = await client.messages.create({ ...params, stream: true });
  const types = [];
  let text = '', usage = null, start = null;
  for await (const ev of events) {
    types.push(ev.type);
    if (ev.type === 'message_start') start = ev.message;
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    if (ev.type === 'message_delta') usage = ev.usage;
  }
  const shape = types.filter((t, i) => t !== 'content_block_delta' || types[i - 1] !== 'content_block_delta');
  check(eq(shape, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop',
    'message_delta', 'message_stop']), 'stream: true: message_start, block start/deltas/stop, message_delta, message_stop',
  types);
  check(start && eq(start.content, []) && start.stop_reason === null, 'stream: true: message_start has empty content');
  check(text === msg.content[0].text && usage && usage.output_tokens === msg.usage.output_tokens &&
    usage.input_tokens === msg.usage.input_tokens, 'stream: true: text and cumulative usage = create()');
}

// --- count_tokens: the input tokens an answer bills
{
  const n = await client.messages.countTokens({ model: MODEL, messages: params.messages });
  check(n.input_tokens === msg.usage.input_tokens, 'countTokens = create() usage.input_tokens', n);
  const nt = await client.messages.countTokens({ model: MODEL, tools, messages: convo.slice(0, 1) });
  const first = await client.messages.create({ model: MODEL, max_tokens: 500, tools, messages: convo.slice(0, 1) });
  check(nt.input_tokens === first.usage.input_tokens, 'countTokens with tools = create() usage.input_tokens', nt);
}

// --- models
{
  const ids = [];
  for await (const m of client.models.list({ limit: 2 })) ids.push(m.id);
  check(ids.length === 7 && ids.includes(MODEL) && new Set(ids).size === 7,
    'models.list: every known model, across pages of 2', ids);
  const m = await client.models.retrieve('claude-opus-4-8');
  check(m.id === 'claude-opus-4-8' && m.type === 'model' && m.display_name === 'Claude Opus 4.8', 'models.retrieve', m);
  await expectError('models.retrieve of an unknown model', SIM_URL, () => client.models.retrieve('claude-nope-1'),
    Anthropic.NotFoundError);
}

// --- every error class the SDK maps; 4xx are not retried, 429/5xx are
const once = new Anthropic({ apiKey: KEY, baseURL: SIM_URL, maxRetries: 0 });
const steered = (code) => () => once.messages.create(params, { headers: { 'x-sim-fault': String(code) } });
await expectError('400 (unknown field)', SIM_URL, () => client.messages.create({ ...params, foo: 1 }),
  Anthropic.BadRequestError, 1);
await expectError('400 (unknown tool_choice type)', SIM_URL,
  () => client.messages.create({ ...params, tools, tool_choice: { type: 'sometimes' } }), Anthropic.BadRequestError, 1);
await expectError('400 (tool without input_schema)', SIM_URL,
  () => client.messages.create({ ...params, tools: [{ name: 'x' }] }), Anthropic.BadRequestError, 1);
await expectError('401 (wrong key)', SIM_URL,
  () => new Anthropic({ apiKey: 'wrong-key', baseURL: SIM_URL }).messages.create(params), Anthropic.AuthenticationError, 1);
await expectError('404 (unknown model)', SIM_URL, () => client.messages.create({ ...params, model: 'claude-nope-1' }),
  Anthropic.NotFoundError, 1);
await expectError('413 (body over max_body_bytes)', SIM_URL,
  () => client.messages.create({ ...params, messages: [{ role: 'user', content: 'x'.repeat(1100000) }] }),
  Anthropic.ContentTooLargeError, 1);
await expectError('403 (x-sim-fault)', SIM_URL, steered(403), Anthropic.PermissionDeniedError, 1);
await expectError('429 (x-sim-fault)', SIM_URL, steered(429), Anthropic.RateLimitError, 1);
await expectError('500 (x-sim-fault)', SIM_URL, steered(500), Anthropic.InternalServerError, 1);
const e529 = await expectError('529 (x-sim-fault)', SIM_URL, steered(529), Anthropic.OverloadedError, 1);
check(e529 && e529.headers.get('retry-after') === '1' && e529.headers.get('x-should-retry') === 'true',
  '529 carries retry-after and x-should-retry: true');
const e400 = await expectError('400 (x-sim-fault)', SIM_URL, steered(400), Anthropic.BadRequestError, 1);
check(e400 && e400.headers.get('x-should-retry') === 'false' && e400.type === 'invalid_request_error' &&
  typeof e400.requestID === 'string', '400: x-should-retry: false, error type, request id');

// --- the SDK's own retries, honouring the hints
{
  const retrying = new Anthropic({ apiKey: KEY, baseURL: SIM_URL, maxRetries: 2 });
  const t0 = Date.now();
  await expectError('maxRetries 2 on 529 (x-sim-fault)', SIM_URL,
    () => retrying.messages.create(params, { headers: { 'x-sim-fault': '529' } }), Anthropic.OverloadedError, 3);
  const waited = Date.now() - t0;
  check(waited >= 1900, 'the retries waited retry-after (1 s) each', `${waited} ms`);
  await expectError('maxRetries 2 on 400', SIM_URL,
    () => retrying.messages.create(params, { headers: { 'x-sim-fault': '400' } }), Anthropic.BadRequestError, 1);
  await expectError('maxRetries 2 on 401', SIM_URL,
    () => new Anthropic({ apiKey: 'wrong-key', baseURL: SIM_URL, maxRetries: 2 }).messages.create(params),
    Anthropic.AuthenticationError, 1);
  const c529 = new Anthropic({ apiKey: 'any-key', baseURL: SIM_529_URL, maxRetries: 2 });
  await expectError('maxRetries 2 on a fault_529 share of 1.0', SIM_529_URL, () => c529.messages.create(params),
    Anthropic.OverloadedError, 3);
  const s = await stats(SIM_529_URL);
  check(s.by_status['529'] === 3, 'the 529 simulator answered 3 times 529', s.by_status);
}

// --- faults in a stream: an error event after the 200, a cut connection
{
  const err = await expectError('stream error event (x-sim-fault: stream_error)', SIM_URL,
    () => once.messages.stream(params, { headers: { 'x-sim-fault': 'stream_error' } }).finalMessage(),
    Anthropic.APIError, 1);
  check(err && err.type === 'overloaded_error', 'the error event is an overloaded_error', err && err.message);
  await expectError('stream cut before message_stop (x-sim-fault: stream_cut)', SIM_URL,
    () => once.messages.stream(params, { headers: { 'x-sim-fault': 'stream_cut' } }).finalMessage(),
    Anthropic.AnthropicError, 1);
}

console.log(failed ? `# ${failed} check(s) failed` : '# all checks passed');
process.exit(failed ? 1 : 0);
