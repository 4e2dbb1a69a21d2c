package bundle

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// A policy's reasons stay bounded in count and length, whatever it
// returns; a value of another type is a malformed decision, never a panic.
func TestReasonsAreBounded(t *testing.T) {
	many := make([]any, 20)
	for i := range many {
		many[i] = fmt.Sprintf("r%02d", i)
	}
	long := strings.Repeat("é", MaxReasonBytes) // 2 bytes each
	d, _, err := readResult(map[string]any{"allow": false, "reason": append(many, long)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Reasons) != MaxReasons || d.Reasons[0] != "r00" || d.Reasons[MaxReasons-1] != "(14 more)" {
		t.Errorf("21 reasons kept as %q; want the first %d and a count of the rest", d.Reasons, MaxReasons-1)
	}
	d, _, err = readResult(map[string]any{"allow": false, "reason": long}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.Reasons[0]; len(r) > MaxReasonBytes || !utf8.ValidString(r) || !strings.HasSuffix(r, "...") {
		t.Errorf("a %d-byte reason kept as %d bytes (valid UTF-8 %v): %q", len(long), len(r), utf8.ValidString(r), r)
	}
	if d.Reason != d.Reasons[0] {
		t.Errorf("Reason %q; want the one reason", d.Reason)
	}

	for _, odd := range []any{nil, true, json.Number("3"), map[string]any{}, []any{[]any{"nested"}}, []any{nil}, 3.5} {
		if _, _, err := readResult(map[string]any{"allow": true, "reason": odd}, 0); err == nil || !strings.Contains(err.Error(), "want a string") {
			t.Errorf("reason %#v: err %v; want a malformed decision", odd, err)
		}
	}
}
