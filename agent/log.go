package agent

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

var timeFormatOnce sync.Once

// NewLogger builds the root logger; components derive theirs with
// Str("component", ...). level and format were validated by config.
func NewLogger(w io.Writer, level, format string) zerolog.Logger {
	// A zerolog global: set once, so that agents in one process (tests)
	// don't race on it.
	timeFormatOnce.Do(func() { zerolog.TimeFieldFormat = time.RFC3339Nano })
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
