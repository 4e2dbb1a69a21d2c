package authz

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/bundle"
)

// grpcPolicy decides gRPC calls by service and method, and everything else
// by path.
const grpcPolicy = `package warden.authz

default allow := false

allow if {
	input.grpc.service == "warden.test.Echo"
	input.grpc.method in {"Unary", "Bidi"}
}

allow if {
	not input.grpc
	input.path == "/plain"
}
`

func grpcRequest(service, method string) *pep.Request {
	r := request("POST", "/"+service+"/"+method, "Content-Type", "application/grpc")
	r.GRPC = &pep.GRPC{Service: []byte(service), Method: []byte(method)}
	return r
}

// input.grpc reaches the policy for gRPC requests only, keys the decision
// cache (an allowed method's decision is never handed to another method),
// is written to the decision log and read back for replay.
func TestGRPCInputDecidesCachesAndReplays(t *testing.T) {
	e := newEngine(t, grpcPolicy)
	var log bytes.Buffer
	a := New(e, func() string { return ownID }, zerolog.New(&log))
	steps := []struct {
		name string
		req  *pep.Request
		path string
		want int
	}{
		{"an allowed method", grpcRequest("warden.test.Echo", "Unary"), "/warden.test.Echo/Unary", 0},
		{"the same, from the cache", grpcRequest("warden.test.Echo", "Unary"), "/warden.test.Echo/Unary", 0},
		{"another method of the service", grpcRequest("warden.test.Echo", "Admin"), "/warden.test.Echo/Admin", 403},
		{"the allowed method of another service", grpcRequest("warden.test.Other", "Unary"), "/warden.test.Other/Unary", 403},
		{"a plain request has no input.grpc", request("GET", "/plain"), "/plain", 0},
		{"a plain request on a gRPC-like path", request("POST", "/warden.test.Echo/Unary"), "/warden.test.Echo/Unary", 403},
	}
	for _, s := range steps {
		if v := check(a, s.req, peerRequest(s.path)); v.Status != s.want {
			t.Errorf("%s: status %d, want %d", s.name, v.Status, s.want)
		}
	}
	line, _, _ := strings.Cut(log.String(), "\n")
	if !strings.Contains(line, `"grpc":{"service":"warden.test.Echo","method":"Unary"}`) {
		t.Fatalf("decision log line without input.grpc: %s", line)
	}
	l, err := ReadLoggedInput([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if l.Input.GRPC == nil || *l.Input.GRPC != (bundle.GRPC{Service: "warden.test.Echo", Method: "Unary"}) {
		t.Fatalf("replayed input.grpc %+v", l.Input.GRPC)
	}
	if r := Explain(context.Background(), e, l, bundle.ExplainFails, io.Discard); !r.Allow {
		t.Errorf("replay of the allowed call: %+v", r)
	}
	l.Input.GRPC.Method = "Admin"
	if r := Explain(context.Background(), e, l, bundle.ExplainFails, io.Discard); r.Allow {
		t.Errorf("replay with another method allowed: %+v", r)
	}
}
