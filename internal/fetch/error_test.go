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
		{"an error quoting the URL with its password masked", fmt.Errorf("%s: %w", asked.Redacted(), refused)},
		{"an error quoting the URL unescaped", fmt.Errorf("%s: %w", raw, refused)},
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
	// An error that quotes nothing secret keeps its chain and its text,
	// even where a short secret is an ordinary word.
	short, err := url.Parse("http://u:p@bundles.example/?a#b")
	if err != nil {
		t.Fatal(err)
	}
	found := errors.New("404 Not Found: a user, a path, a b")
	if err := newError("GET", raw, []*url.URL{short}, &url.Error{Op: "Get", URL: raw, Err: found}); err.Err != found {
		t.Errorf("%v was rewritten", err)
	}
}
