package main

import (
	"context"
	"errors"
	"io"
)

// runInit installs the inbound redirect rules (issue 7).
func runInit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("init: not implemented yet")
}
