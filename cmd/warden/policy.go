package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/warden-sidecar/warden/agent/authz"
	"github.com/warden-sidecar/warden/bundle"
)

const policyUsage = "usage: warden policy eval --input FILE [--bundle PATH] [--decision RULE] [--explain fails|full|notes]"

const policyHelp = policyUsage + `
  --input FILE      a decision log line, or a bare input object; - reads stdin
  --bundle PATH     the bundle: a directory or .tar.gz file (default: the embedded default bundle)
  --decision RULE   the decision's rule path (default ` + bundle.DefaultDecision + `)
  --explain MODE    OPA's explanation: fails (default), full or notes
Prints the decision as JSON, then OPA's explanation. Exit status: 0 allowed,
1 denied, 2 usage or input error.`

// maxInputFile bounds what --input reads: a decision log line is kilobytes.
const maxInputFile = 16 << 20

// runPolicy is `warden policy eval`: it decides a logged input again with a
// bundle, offline, and prints the decision and OPA's explanation of it.
// Exit status (exitCode): 0 allowed, 1 denied, 2 usage or input error.
func runPolicy(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "eval" {
		return &exitCode{2, errors.New(policyUsage)}
	}
	fs := flag.NewFlagSet("policy eval", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors go out in one line, with the usage
	input := fs.String("input", "", "")
	source := fs.String("bundle", "", "")
	decision := fs.String("decision", bundle.DefaultDecision, "")
	explain := fs.String("explain", string(bundle.ExplainFails), "")
	usageErr := func(format string, a ...any) error {
		return &exitCode{2, fmt.Errorf("policy eval: "+format+"; "+policyUsage, a...)}
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, policyHelp)
			return nil
		}
		return usageErr("%v", err)
	}
	switch {
	case fs.NArg() > 0:
		return usageErr("unexpected argument %q", fs.Arg(0))
	case *input == "":
		return usageErr("--input is required")
	}
	mode, err := bundle.ParseExplainMode(*explain)
	if err != nil {
		return usageErr("--explain %q: want fails, full or notes", *explain)
	}

	data, err := readInput(*input, stdin)
	if err != nil {
		return &exitCode{2, fmt.Errorf("policy eval: --input %s: %w", *input, err)}
	}
	logged, err := authz.ReadLoggedInput(data)
	if err != nil {
		return &exitCode{2, fmt.Errorf("policy eval: --input %s: %w", *input, err)}
	}
	engine, err := bundle.New(bundle.Options{Source: *source, Decision: *decision})
	if err != nil {
		return &exitCode{2, fmt.Errorf("policy eval: %w", err)}
	}
	if err := engine.Load(ctx); err != nil {
		return &exitCode{2, fmt.Errorf("policy eval: %w", err)}
	}

	var explanation bytes.Buffer
	r := authz.Explain(ctx, engine, logged, mode, &explanation)
	for _, w := range logged.Warnings {
		fmt.Fprintln(stderr, "warden: policy eval: warning:", w)
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	if _, err := stdout.Write(explanation.Bytes()); err != nil {
		return err
	}
	if !r.Allow {
		return &exitCode{1, nil}
	}
	return nil
}

func readInput(name string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInputFile+1))
	if err == nil && len(data) > maxInputFile {
		err = fmt.Errorf("larger than %d MiB: give one decision log line", maxInputFile>>20)
	}
	return data, err
}
