package inject

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// FuzzPatch feeds Patch pods as anyone who may create a pod can write them
// (annotations above all): it never panics, and a patch it returns, applied,
// gives exactly the pod Inject returns.
func FuzzPatch(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		if filepath.Ext(filepath.Base(file[:len(file)-5])) == ".golden" {
			continue
		}
		b, _ := os.ReadFile(file)
		if j, err := yaml.YAMLToJSON(b); err == nil {
			f.Add(j, false)
			f.Add(j, true)
		}
	}
	f.Add([]byte(`{"metadata":{"annotations":{"warden.io/redirect-ports":"*","warden.io/upstream-port":"15443"}},"spec":{"containers":[{"name":"a"}]}}`), false)
	f.Add([]byte(`{"metadata":{"annotations":{"warden.io/inject":"true","warden.io/admin-addr":"[::]:1"}},"spec":{"initContainers":[{"name":"x"}]}}`), true)
	f.Fuzz(func(t *testing.T, podJSON []byte, optIn bool) {
		var pod corev1.Pod
		if json.Unmarshal(podJSON, &pod) != nil {
			return
		}
		scope := ScopeNamespace
		if optIn {
			scope = ScopeOptIn
		}
		ops, res, err := Patch(&pod, scope, Options{Image: testImage})
		if err != nil || res.Pod == nil {
			if len(ops) != 0 {
				t.Fatalf("a patch without an injected pod: %v %v", ops, err)
			}
			return
		}
		before, _ := json.Marshal(&pod)
		after, _ := json.Marshal(res.Pod)
		var want, got any
		_ = json.Unmarshal(after, &want)
		_ = json.Unmarshal(applyPatch(t, before, ops), &got)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("the patch does not give the injected pod:\n%v", ops)
		}
	})
}
