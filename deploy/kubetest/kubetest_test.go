package kubetest

import (
	"context"
	"strings"
	"testing"
)

func TestAPIServerStartsAndAdmitsPods(t *testing.T) {
	c := Start(t)
	ctx := context.Background()
	c.CreateNamespace(t, "shop", map[string]string{"team": "a"})
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "namespace": "shop"},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "busybox"}}},
	}
	var created struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	if _, err := c.Create(ctx, pod, false, &created); err != nil || created.Metadata.UID == "" {
		t.Fatalf("create: %v %+v", err, created)
	}
	// A field the schema lacks is refused, as kubectl apply refuses it.
	pod["spec"].(map[string]any)["contianers"] = []any{}
	_, err := c.Create(ctx, pod, true, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.contianers"`) {
		t.Errorf("unknown field: %v", err)
	}
	if err := c.Do(ctx, "GET", "/api/v1/namespaces/shop/pods/nope", nil, nil); !IsNotFound(err) {
		t.Errorf("missing pod: %v", err)
	}
	out, err := c.Kubectl(t, "", "get", "pods", "-n", "shop", "-o", "name")
	if err != nil || strings.TrimSpace(out) != "pod/p" {
		t.Errorf("kubectl: %q %v", out, err)
	}
}

func TestDocuments(t *testing.T) {
	docs, err := Documents([]byte("# c\n---\na: 1\n---\n\n---\nb: [x]\n"))
	if err != nil || len(docs) != 2 || docs[0]["a"] != float64(1) {
		t.Fatalf("%v %v", docs, err)
	}
}
