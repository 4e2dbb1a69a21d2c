package fetch

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// Errors that quote a URL other than as net/http's *url.Error are
// rewritten: the parts of the URLs asked for that redact.URL hides are
// replaced, in the URL asked for and in a redirect's.
func TestErrorsThatQuoteASecretAreRewritten(t *testing.T) {
	const raw = "https://u-s3cret:pw-s3cret@bundles.example/b.tar.gz?sig=sig-s3cret#frag-s3cret"
	asked, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	hop, err := url.Parse("https://cdn.example/b.tar.gz?X-Amz-Signature=hop-s3cret")
	if err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused")
	tests := []struct {
		name string
		err  error
	}{
		{"a *url.Error wrapped in another error", fmt.Errorf("through a proxy: %w", &url.Error{Op: "Get", URL: raw, Err: refused})},
		{"a *url.Error wrapping an error that quotes the URL", &url.Error{Op: "Get", URL: raw, Err: fmt.Errorf("%s: %w", raw, refused)}},
		{"an error quoting the redirect's URL", fmt.Errorf("at %s: %w", hop, refused)},
		{"an error quoting a user name", fmt.Errorf("user u-s3cret: %w", refused)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newError("GET", raw, []*url.URL{asked, hop}, tt.err)
			if msg := err.Error(); strings.Contains(msg, "s3cret") || !strings.Contains(msg, "refused") {
				t.Errorf("error %q", msg)
			}
			if err.URL != "https://bundles.example/b.tar.gz" {
				t.Errorf("URL %q", err.URL)
			}
		})
	}
	// An error that quotes nothing secret keeps its chain.
	if err := newError("GET", raw, []*url.URL{asked}, &url.Error{Op: "Get", URL: raw, Err: refused}); !errors.Is(err, refused) {
		t.Errorf("%v lost its chain", err)
	}
}
