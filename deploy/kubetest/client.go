package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// StatusError is the API server's answer to a request it refused.
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("kubetest: %d %s: %s", e.Code, e.Reason, e.Message)
}

// IsNotFound says whether err is a 404 of the API server.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

func (c *Cluster) raw(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	code, b, _, err := c.rawWarn(ctx, method, path, body)
	return code, b, err
}

// rawWarn is raw that also returns the warnings the API server sent
// (Warning headers: admission webhooks' among them).
func (c *Cluster) rawWarn(ctx context.Context, method, path string, body []byte) (int, []byte, []string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var warnings []string
	for _, h := range resp.Header.Values("Warning") {
		// 299 - "text" (RFC 7234), as the API server writes them.
		if _, text, ok := strings.Cut(h, " - "); ok {
			if uq, err := strconv.Unquote(text); err == nil {
				text = uq
			}
			warnings = append(warnings, text)
		}
	}
	return resp.StatusCode, b, warnings, err
}

// Do sends in (JSON-encoded, unless nil) to path and decodes the answer
// into out (unless nil). An answer other than 2xx is a *StatusError.
func (c *Cluster) Do(ctx context.Context, method, path string, in, out any) error {
	_, err := c.do(ctx, method, path, in, out)
	return err
}

func (c *Cluster) do(ctx context.Context, method, path string, in, out any) ([]string, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, err
		}
	}
	code, b, warnings, err := c.rawWarn(ctx, method, path, body)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %s %s: %w", method, path, err)
	}
	if code < 200 || code > 299 {
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &st) != nil || st.Message == "" {
			st.Message = string(b)
		}
		return warnings, &StatusError{Code: code, Reason: st.Reason, Message: st.Message}
	}
	if out != nil {
		return warnings, json.Unmarshal(b, out)
	}
	return warnings, nil
}

// Object is any API object: a typed one from k8s.io/api, or a manifest
// decoded into a map.
type Object any

// Create creates obj, or with dryRun only has the API server validate and
// admit it (?dryRun=All). Unknown fields are errors (fieldValidation=Strict,
// as kubectl apply does). The created object is decoded into out (unless
// nil); the warnings are the API server's (and its webhooks').
func (c *Cluster) Create(ctx context.Context, obj Object, dryRun bool, out any) ([]string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, err
	}
	path, err := c.CollectionPath(ctx, meta.APIVersion, meta.Kind, meta.Metadata.Namespace)
	if err != nil {
		return nil, err
	}
	q := url.Values{"fieldValidation": {"Strict"}}
	if dryRun {
		q.Set("dryRun", "All")
	}
	return c.do(ctx, http.MethodPost, path+"?"+q.Encode(), json.RawMessage(b), out)
}

// CollectionPath is the REST path of a kind's collection (in namespace ns
// when the kind is namespaced), found by API discovery.
func (c *Cluster) CollectionPath(ctx context.Context, apiVersion, kind, ns string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := apiVersion + "/" + kind
	r, ok := c.resources[key]
	if !ok {
		base := "/apis/" + apiVersion
		if !strings.Contains(apiVersion, "/") {
			base = "/api/" + apiVersion
		}
		var list struct {
			Resources []struct {
				Name       string `json:"name"`
				Kind       string `json:"kind"`
				Namespaced bool   `json:"namespaced"`
			} `json:"resources"`
		}
		if err := c.Do(ctx, http.MethodGet, base, nil, &list); err != nil {
			return "", fmt.Errorf("kubetest: discover %s: %w", apiVersion, err)
		}
		if c.resources == nil {
			c.resources = make(map[string]resource)
		}
		for _, res := range list.Resources {
			if !strings.Contains(res.Name, "/") {
				c.resources[apiVersion+"/"+res.Kind] = resource{path: base, name: res.Name, namespaced: res.Namespaced}
			}
		}
		if r, ok = c.resources[key]; !ok {
			return "", fmt.Errorf("kubetest: the API server serves no %s in %s", kind, apiVersion)
		}
	}
	if !r.namespaced {
		return r.path + "/" + r.name, nil
	}
	if ns == "" {
		ns = "default"
	}
	return r.path + "/namespaces/" + ns + "/" + r.name, nil
}

// CreateNamespace creates a namespace with labels, and its default
// ServiceAccount, which the controller manager would create (the
// ServiceAccount admission plugin refuses pods without it).
func (c *Cluster) CreateNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name, "labels": labels}}
	if _, err := c.Create(ctx, ns, false, nil); err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	sa := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": "default", "namespace": name}}
	if _, err := c.Create(ctx, sa, false, nil); err != nil {
		t.Fatalf("namespace %s: default service account: %v", name, err)
	}
}

// Kubectl runs kubectl against the cluster with stdin, and returns its
// output.
func (c *Cluster) Kubectl(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Tool(t, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Documents splits a multi-document YAML stream into objects, dropping
// empty documents.
func Documents(stream []byte) ([]map[string]any, error) {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var doc bytes.Buffer
	flush := func() error {
		var obj map[string]any
		if err := yaml.Unmarshal(doc.Bytes(), &obj); err != nil {
			return err
		}
		if len(obj) > 0 {
			out = append(out, obj)
		}
		doc.Reset()
		return nil
	}
	for sc.Scan() {
		if line := sc.Text(); line == "---" || strings.HasPrefix(line, "--- ") {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		doc.Write(sc.Bytes())
		doc.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}
