// go-publisher: an agentq publisher written only against the wire contract
// (schemas/agentq/v1/*.proto) and the official NATS Go client.
//
// It publishes -n tasks of type "interop" to JetStream subject
// agentq.tasks.interop (header Nats-Msg-Id = task id), waits until a Result
// for every task is in the KV bucket agentq-results, decodes each Result and
// checks it: status COMPLETED and output beginning with
// "echo: interop prompt <i>" (agentq-sim echoes the prompt).
//
// Exit status: 0 when every task completed as expected, 1 otherwise.
//
// -selftest is for a bare nats-server with no agentq stack: it creates the
// stream and bucket if missing and runs an in-process fake worker that writes
// the Results, so the publishing and KV-reading code can be exercised alone.
// Never use it against a real stack.
//
// The package agentq.example/agentqv1 is generated from the .proto files at
// build time (see README.md); it is never committed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	agentqv1 "agentq.example/agentqv1"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

const (
	streamName  = "AGENTQ_TASKS"
	bucketName  = "agentq-results"
	taskType    = "interop"
	subjectBase = "agentq.tasks."
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-publisher: "+format+"\n", args...)
	os.Exit(1)
}

func taskID(runID string, i int) string { return fmt.Sprintf("go-%s-%d", runID, i) }
func prompt(i int) string               { return fmt.Sprintf("interop prompt %d", i) }

// wantOutput reports whether out is the echo of prompt i: it must begin with
// "echo: interop prompt <i>" and that prefix must not be followed by another
// digit (so the output for task 10 does not pass for task 1).
func wantOutput(out string, i int) bool {
	p := "echo: " + prompt(i)
	if !strings.HasPrefix(out, p) {
		return false
	}
	rest := out[len(p):]
	return rest == "" || rest[0] < '0' || rest[0] > '9'
}

func main() {
	defURL := os.Getenv("NATS_URL")
	if defURL == "" {
		defURL = "nats://127.0.0.1:4222"
	}
	url := flag.String("url", defURL, "NATS server URL (default $NATS_URL or nats://127.0.0.1:4222)")
	n := flag.Int("n", 20, "number of tasks to publish")
	timeout := flag.Duration("timeout", 60*time.Second, "how long to wait for all results")
	runID := flag.String("runid", "", "run id used in task ids go-<runid>-<i> (default: derived from the clock)")
	tenant := flag.String("tenant", "go-publisher", "Task.tenant")
	selftest := flag.Bool("selftest", false, "bare nats-server only: create stream+bucket and fake the worker in-process")
	flag.Parse()

	if *n < 1 {
		die("-n must be at least 1")
	}
	if *runID == "" {
		*runID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}

	nc, err := nats.Connect(*url, nats.Name("agentq-go-publisher"), nats.Timeout(5*time.Second))
	if err != nil {
		die("connect %s: %v", *url, err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		die("jetstream: %v", err)
	}

	if *selftest {
		if err := startFakeWorker(js); err != nil {
			die("selftest setup: %v", err)
		}
	}

	// Publish. The Nats-Msg-Id header makes a retried publish a no-op on the
	// server, as the contract asks.
	subject := subjectBase + taskType
	for i := 1; i <= *n; i++ {
		t := &agentqv1.Task{
			Id:            taskID(*runID, i),
			Type:          taskType,
			Tenant:        *tenant,
			Prompt:        prompt(i),
			Temperature:   proto.Float32(0), // proto3 optional: present, value 0
			Metadata:      map[string]string{"publisher": "go", "run": *runID},
			CreatedUnixMs: time.Now().UnixMilli(),
		}
		data, err := proto.Marshal(t)
		if err != nil {
			die("encode task %s: %v", t.Id, err)
		}
		msg := nats.NewMsg(subject)
		msg.Header.Set("Nats-Msg-Id", t.Id)
		msg.Data = data
		ack, err := js.PublishMsg(msg)
		if err != nil {
			die("publish %s: %v", t.Id, err)
		}
		if ack.Stream != streamName {
			die("publish %s: stored in stream %q, want %q", t.Id, ack.Stream, streamName)
		}
		if ack.Duplicate {
			die("publish %s: server reports a duplicate (run id reused?)", t.Id)
		}
	}

	kv, err := js.KeyValue(bucketName)
	if err != nil {
		die("open KV bucket %s: %v", bucketName, err)
	}

	// Wait for every Result. Poll the missing keys; a Result is final once
	// written, so each key is checked until found and then never again.
	results := make(map[int]*agentqv1.Result, *n)
	problems := make(map[int]string)
	deadline := time.Now().Add(*timeout)
	for {
		for i := 1; i <= *n; i++ {
			if _, done := results[i]; done {
				continue
			}
			e, err := kv.Get(taskID(*runID, i))
			if errors.Is(err, nats.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				problems[i] = fmt.Sprintf("kv get: %v", err)
				continue
			}
			r := &agentqv1.Result{}
			if err := proto.Unmarshal(e.Value(), r); err != nil {
				results[i] = nil
				problems[i] = fmt.Sprintf("undecodable Result (%d bytes): %v", len(e.Value()), err)
				continue
			}
			results[i] = r
			delete(problems, i)
		}
		if len(results) == *n || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	completed := 0
	for i := 1; i <= *n; i++ {
		id := taskID(*runID, i)
		r, found := results[i]
		switch {
		case !found:
			if problems[i] == "" {
				problems[i] = fmt.Sprintf("no Result after %s", *timeout)
			}
		case r == nil:
			// undecodable, already described
		case r.Id != id:
			problems[i] = fmt.Sprintf("Result.id = %q, want %q", r.Id, id)
		case r.Status != agentqv1.Status_STATUS_COMPLETED:
			msg := r.Status.String()
			if r.Error != nil {
				msg += fmt.Sprintf(" class=%q message=%q http_status=%d", r.Error.Class, r.Error.Message, r.Error.HttpStatus)
			}
			problems[i] = "status " + msg
		case !wantOutput(r.Output, i):
			problems[i] = fmt.Sprintf("output %q does not begin with %q", r.Output, "echo: "+prompt(i))
		default:
			completed++
			if r.Type != taskType {
				fmt.Fprintf(os.Stderr, "go-publisher: warning: %s: Result.type = %q, want %q\n", id, r.Type, taskType)
			}
		}
	}

	if completed == *n {
		fmt.Printf("go-publisher: %d published, %d completed (run %s)\n", *n, completed, *runID)
		os.Exit(0)
	}
	keys := make([]int, 0, len(problems))
	for i := range problems {
		keys = append(keys, i)
	}
	sort.Ints(keys)
	for _, i := range keys {
		fmt.Printf("go-publisher: %s: %s\n", taskID(*runID, i), problems[i])
	}
	fmt.Printf("go-publisher: %d published, %d completed (run %s)\n", *n, completed, *runID)
	os.Exit(1)
}

// startFakeWorker (selftest only) creates the stream and bucket when they do
// not exist and consumes agentq.tasks.interop, storing an echo Result for each
// task, the way agentq-worker with agentq-sim would.
func startFakeWorker(js nats.JetStreamContext) error {
	if _, err := js.StreamInfo(streamName); errors.Is(err, nats.ErrStreamNotFound) {
		_, err = js.AddStream(&nats.StreamConfig{
			Name:       streamName,
			Subjects:   []string{subjectBase + ">"},
			Retention:  nats.WorkQueuePolicy,
			Storage:    nats.FileStorage,
			Duplicates: 2 * time.Minute,
		})
		if err != nil {
			return fmt.Errorf("create stream: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	kv, err := js.KeyValue(bucketName)
	if errors.Is(err, nats.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(&nats.KeyValueConfig{Bucket: bucketName, TTL: time.Hour})
	}
	if err != nil {
		return fmt.Errorf("bucket: %w", err)
	}
	sub, err := js.PullSubscribe(subjectBase+taskType, "go-publisher-selftest", nats.ManualAck())
	if err != nil {
		return fmt.Errorf("pull subscribe: %w", err)
	}
	go func() {
		for {
			msgs, err := sub.Fetch(16, nats.MaxWait(time.Second))
			if err != nil && !errors.Is(err, nats.ErrTimeout) {
				fmt.Fprintf(os.Stderr, "go-publisher: selftest worker: fetch: %v\n", err)
				return
			}
			for _, m := range msgs {
				t := &agentqv1.Task{}
				if err := proto.Unmarshal(m.Data, t); err != nil {
					fmt.Fprintf(os.Stderr, "go-publisher: selftest worker: bad task: %v\n", err)
					_ = m.Term()
					continue
				}
				if m.Header.Get("Nats-Msg-Id") != t.Id || t.Temperature == nil {
					fmt.Fprintf(os.Stderr, "go-publisher: selftest worker: %s: header/optional field lost\n", t.Id)
				}
				r := &agentqv1.Result{
					Id:              t.Id,
					Status:          agentqv1.Status_STATUS_COMPLETED,
					Output:          "echo: " + t.Prompt,
					StopReason:      "end_turn",
					Model:           "selftest",
					Attempts:        1,
					Worker:          "go-publisher-selftest",
					Type:            t.Type,
					CompletedUnixMs: time.Now().UnixMilli(),
				}
				b, _ := proto.Marshal(r)
				if _, err := kv.Put(t.Id, b); err != nil {
					fmt.Fprintf(os.Stderr, "go-publisher: selftest worker: put %s: %v\n", t.Id, err)
					_ = m.Nak()
					continue
				}
				_ = m.Ack()
			}
		}
	}()
	return nil
}
