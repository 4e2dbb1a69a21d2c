package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuditDecision is the key of the audit annotation each answer carries
// (the API server prefixes it with the webhook's name): "injected",
// "skipped: <Reason>" or "refused".
const AuditDecision = "decision"

// Handler answers the admission review of a pod with Patch. The webhook
// serves it for ScopeNamespace at PathNamespace and for ScopeOptIn at
// PathOptIn. Anything but the creation of a pod is allowed unchanged
// (the webhook's rules send nothing else).
func Handler(scope Scope, opts Options) func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return func(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
			return &admissionv1.AdmissionResponse{Allowed: true, AuditAnnotations: map[string]string{AuditDecision: "skipped: not_a_pod_creation"}}
		}
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return refuse(fmt.Errorf("inject: decode pod: %w", err))
		}
		ops, res, err := Patch(&pod, scope, opts)
		if err != nil {
			return refuse(err)
		}
		resp := &admissionv1.AdmissionResponse{Allowed: true, Warnings: res.Warnings}
		if res.Pod == nil {
			resp.AuditAnnotations = map[string]string{AuditDecision: "skipped: " + string(res.Skipped)}
			return resp
		}
		patch, err := json.Marshal(ops)
		if err != nil {
			return refuse(fmt.Errorf("inject: encode patch: %w", err))
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
		resp.AuditAnnotations = map[string]string{AuditDecision: "injected"}
		return resp
	}
}

func refuse(err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		Allowed:          false,
		Result:           &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: err.Error()},
		AuditAnnotations: map[string]string{AuditDecision: "refused"},
	}
}
