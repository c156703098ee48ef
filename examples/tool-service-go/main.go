// tool-service-go: agentq tool services written with the official NATS Go
// client's micro package (the NATS services protocol), nothing of agentq.
//
// It serves two tools, each as one micro service (nats.go 1.22's micro, the
// one Debian 12 ships, has one endpoint per service):
//
//	convert_currency on agentq.tools.convert_currency {"amount": 10, "from": "EUR", "to": "USD"}
//	get_time         on agentq.tools.get_time         {"zone": "UTC"}
//
// The worker sends the tool input (JSON) with headers Agentq-Idempotency-Key,
// Agentq-Task-Id, Agentq-Tenant, Agentq-Step and Agentq-Deadline (Unix ms);
// the reply is {"content": "text" | [blocks], "is_error": bool,
// "permanent": bool}. An error reply of the micro package (req.Error: the
// Nats-Service-Error headers) reaches the model as an is_error result.
//
// `agentq tools ls` lists both services with their subjects and stats.
// Prints "ready" once serving; stops on SIGINT or SIGTERM.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// reply is the body agentq expects.
type reply struct {
	Content   string `json:"content"`
	IsError   bool   `json:"is_error,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
}

var rates = map[string]float64{"EUR": 1.0, "USD": 1.08, "GBP": 0.86, "JPY": 162.0}

func convertCurrency(req *micro.Request) {
	var in struct {
		Amount *float64 `json:"amount"`
		From   string   `json:"from"`
		To     string   `json:"to"`
	}
	if err := json.Unmarshal(req.Data(), &in); err != nil || in.Amount == nil {
		req.RespondJSON(reply{Content: "convert_currency needs a number \"amount\"", IsError: true})
		return
	}
	from, okFrom := rates[strings.ToUpper(in.From)]
	to, okTo := rates[strings.ToUpper(in.To)]
	if !okFrom || !okTo {
		// A micro service error: agentq hands "400: ..." to the model.
		req.Error("400", fmt.Sprintf("unknown currency %q or %q", in.From, in.To), nil)
		return
	}
	out := *in.Amount / from * to
	req.RespondJSON(reply{Content: fmt.Sprintf("%.2f %s = %.2f %s", *in.Amount,
		strings.ToUpper(in.From), out, strings.ToUpper(in.To))})
}

func getTime(req *micro.Request) {
	var in struct {
		Zone string `json:"zone"`
	}
	json.Unmarshal(req.Data(), &in)
	if in.Zone == "" {
		in.Zone = "UTC"
	}
	loc, err := time.LoadLocation(in.Zone)
	if err != nil {
		req.RespondJSON(reply{Content: "unknown time zone " + in.Zone, IsError: true})
		return
	}
	// Plain text is a valid reply too.
	req.Respond([]byte(time.Now().In(loc).Format(time.RFC3339)))
}

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	prefix := flag.String("prefix", "agentq.tools", "tool subject prefix")
	keys := flag.String("keys", "", "append every idempotency key seen to this file")
	flag.Parse()

	nc, err := nats.Connect(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer nc.Close()

	var keyLog *os.File
	if *keys != "" {
		if keyLog, err = os.OpenFile(*keys, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer keyLog.Close()
	}
	// Wrap a handler: record the idempotency key first.
	record := func(tool string, h micro.RequestHandler) micro.RequestHandler {
		return func(req *micro.Request) {
			if keyLog != nil {
				fmt.Fprintf(keyLog, "%s %s\n", tool, req.Headers().Get("Agentq-Idempotency-Key"))
			}
			h(req)
		}
	}

	tools := []struct {
		name, description string
		handler           micro.RequestHandler
	}{
		{"convert_currency", "converts an amount between currencies", convertCurrency},
		{"get_time", "the current time in a time zone", getTime},
	}
	var services []micro.Service
	for _, t := range tools {
		svc, err := micro.AddService(nc, micro.Config{
			Name:        t.name,
			Version:     "1.0.0",
			Description: "agentq example tool in Go: " + t.description,
			Endpoint: micro.Endpoint{
				Subject: *prefix + "." + t.name,
				Handler: record(t.name, t.handler),
			},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "add service:", err)
			os.Exit(1)
		}
		services = append(services, svc)
	}
	if err := nc.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "flush:", err)
		os.Exit(1)
	}
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for _, s := range services {
		s.Stop()
	}
}
