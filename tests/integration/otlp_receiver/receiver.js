#!/usr/bin/env node
// A test OTLP/HTTP receiver (tests/integration/trace_export.sh): accepts
// POST /v1/traces with an OTLP/JSON body and checks it with the OpenTelemetry
// project's own code, not agentq's: the ExportTraceServiceRequest message of
// @opentelemetry/otlp-transformer (its protobufjs root, generated from
// opentelemetry-proto).
//
// The check: after the OTLP JSON mapping's one departure from proto3 JSON
// (trace and span ids in hex, which must be exactly 32 / 16 lower-case hex
// digits) is undone, the body goes through the message's fromObject, verify,
// a protobuf encode and decode, and toObject (int64 as strings, enums as
// numbers, defaults left out). What comes back must equal the body: an
// unknown or misspelt field, an int64 sent as a number, a wrong type or a
// default sent anyway would all differ. Then each decoded span is written as
// a JSON line (ids back in hex, attributes as {key: value}) for jq.
//
//   node receiver.js --port-file F --out SPANS.jsonl --log REQUESTS.jsonl
//                    [--fail N] [--fail-status 503] [--retry-after SECS] [--hang 1]
//                    [--reject N]
// The first N requests are answered fail-status (with Retry-After when
// given) without being read as spans. A body that fails the check is
// answered 400 and an {"error": ...} line goes to --out. --hang 1: requests
// are read and never answered (a collector that is stuck). --reject N: a
// 200 answer says partialSuccess.rejectedSpans = N (as a string, int64).
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const modules = args['node-modules'] || path.join(__dirname, 'node_modules');
const root = require(path.join(modules, '@opentelemetry/otlp-transformer/build/src/generated/root'));
const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

let failLeft = Number(args.fail || 0);
const failStatus = Number(args['fail-status'] || 503);
let requests = 0;

function canonical(v) {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

// Ids: the OTLP JSON mapping's hex <-> protobuf JSON's base64.
function mapIds(req, fn) {
  for (const rs of req.resourceSpans || []) {
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        for (const [f, n] of [['traceId', 16], ['spanId', 8], ['parentSpanId', 8]]) {
          if (s[f] !== undefined) s[f] = fn(s[f], n, f);
        }
      }
    }
  }
}
function hexToB64(v, n, f) {
  if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${2 * n}}$`).test(v)) {
    throw new Error(`${f} ${JSON.stringify(v)} is not ${2 * n} lower-case hex digits`);
  }
  return Buffer.from(v, 'hex').toString('base64');
}
function b64ToHex(v) {
  return Buffer.from(v, 'base64').toString('hex');
}

function anyValue(v) {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  return v;
}
function attrs(list) {
  const o = {};
  for (const kv of list || []) o[kv.key] = anyValue(kv.value);
  return o;
}

function check(body) {
  const sent = JSON.parse(body);
  const req = JSON.parse(body);
  mapIds(req, hexToB64);
  const msg = Request.fromObject(req);
  const problem = Request.verify(msg);
  if (problem) throw new Error('verify: ' + problem);
  const decoded = Request.decode(Request.encode(msg).finish());
  const back = Request.toObject(decoded, { longs: String, enums: Number, bytes: String });
  mapIds(back, b64ToHex);
  if (canonical(back) !== canonical(sent)) {
    throw new Error('not the OTLP JSON mapping: sent ' + canonical(sent) + ' but OTLP reads ' + canonical(back));
  }
  const spans = [];
  for (const rs of back.resourceSpans || []) {
    const resource = attrs(rs.resource && rs.resource.attributes);
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        spans.push({
          traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId || null,
          traceState: s.traceState || null, name: s.name, kind: s.kind, flags: s.flags || 0,
          startTimeUnixNano: s.startTimeUnixNano, endTimeUnixNano: s.endTimeUnixNano,
          attributes: attrs(s.attributes), droppedAttributesCount: s.droppedAttributesCount || 0,
          events: (s.events || []).map((e) => ({ name: e.name, timeUnixNano: e.timeUnixNano, attributes: attrs(e.attributes) })),
          droppedEventsCount: s.droppedEventsCount || 0,
          status: s.status || {}, resource, scope: ss.scope || {},
        });
      }
    }
  }
  return spans;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const n = ++requests;
    const entry = { n, method: req.method, url: req.url, contentType: req.headers['content-type'] || null,
                    authorization: req.headers.authorization || null, xTenant: req.headers['x-tenant'] || null,
                    userAgent: req.headers['user-agent'] || null };
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      entry.status = 404;
      fs.appendFileSync(args.log, JSON.stringify(entry) + '\n');
      res.writeHead(404).end();
      return;
    }
    if (args.hang === '1') {
      entry.status = 'hung';
      fs.appendFileSync(args.log, JSON.stringify(entry) + '\n');
      return; // never answered
    }
    if (failLeft > 0) {
      failLeft--;
      entry.status = failStatus;
      fs.appendFileSync(args.log, JSON.stringify(entry) + '\n');
      const h = { 'Content-Type': 'application/json' };
      if (args['retry-after']) h['Retry-After'] = args['retry-after'];
      res.writeHead(failStatus, h).end('{"code":14,"message":"unavailable (test)"}');
      return;
    }
    let spans;
    try {
      spans = check(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      entry.status = 400;
      fs.appendFileSync(args.log, JSON.stringify(entry) + '\n');
      fs.appendFileSync(args.out, JSON.stringify({ error: String(e.message || e) }) + '\n');
      res.writeHead(400, { 'Content-Type': 'application/json' }).end('{}');
      return;
    }
    entry.status = 200;
    entry.spans = spans.length;
    fs.appendFileSync(args.out, spans.map((s) => JSON.stringify(s) + '\n').join(''));
    fs.appendFileSync(args.log, JSON.stringify(entry) + '\n');
    const answer = args.reject ? { partialSuccess: { rejectedSpans: String(args.reject), errorMessage: 'test' } } : {};
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(answer));
  });
});
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(args['port-file'] + '.tmp', String(server.address().port));
  fs.renameSync(args['port-file'] + '.tmp', args['port-file']);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
