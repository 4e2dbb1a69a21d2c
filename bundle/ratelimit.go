package bundle

import (
	"errors"
	"fmt"
	"slices"
)

// RateLimit is a decision's rate_limit: the policy approves the request at
// most PerSecond times a second, with bursts of Burst, per Key (a string
// the policy builds, e.g. from the peer and the route). The PEP keeps one
// bucket per key, and applies it to cached decisions too.
type RateLimit struct {
	Key       string
	PerSecond int64 // 0: no rate_limit
	Burst     int64
}

// Bounds of a rate_limit. A key is held per bucket in the PEP's table, so
// it is short; rates are those the kernel's arithmetic (internal/gcra)
// represents.
const (
	MaxRateLimitKeyBytes = 512
	MaxRateLimitRate     = 1_000_000_000
)

// readRateLimit accepts {"key": non-empty string, "per_second": int >= 1,
// "burst": int >= 1 (optional: per_second)}. Anything else, a member it
// does not know included (a misspelt "persecond" would otherwise mean no
// limit), is an error: a malformed decision denies.
func readRateLimit(v any) (RateLimit, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return RateLimit{}, fmt.Errorf("rate_limit is %s, want an object {key, per_second, burst}", describe(v))
	}
	for name := range m {
		if !slices.Contains([]string{"key", "per_second", "burst"}, name) {
			return RateLimit{}, fmt.Errorf("rate_limit has an unknown member %q, want key, per_second and burst", name)
		}
	}
	var rl RateLimit
	key, ok := m["key"].(string)
	switch {
	case !ok:
		return RateLimit{}, fmt.Errorf("rate_limit.key is %s, want a string", describe(m["key"]))
	case key == "":
		return RateLimit{}, errors.New("rate_limit.key is empty")
	case len(key) > MaxRateLimitKeyBytes:
		return RateLimit{}, fmt.Errorf("rate_limit.key has %d bytes, at most %d allowed", len(key), MaxRateLimitKeyBytes)
	}
	rl.Key = key
	rate := func(name string) (int64, error) {
		n, err := integer(m[name])
		if err != nil || n < 1 || n > MaxRateLimitRate {
			return 0, fmt.Errorf("rate_limit.%s is %s, want a whole number from 1 to %d", name, describe(m[name]), MaxRateLimitRate)
		}
		return n, nil
	}
	var err error
	if rl.PerSecond, err = rate("per_second"); err != nil {
		return RateLimit{}, err
	}
	rl.Burst = rl.PerSecond
	if _, ok := m["burst"]; ok {
		if rl.Burst, err = rate("burst"); err != nil {
			return RateLimit{}, err
		}
	}
	return rl, nil
}
