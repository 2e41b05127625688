// kstatus-of prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the health assessment
// Flux's kustomize-controller and helm-controller use for `wait` and healthChecks) computes for
// Kubernetes objects given as JSON on stdin: one object, or a JSON object of label -> object.
// Output: label -> {"status", "message"} as JSON. Built and run by e2e/test_gitops.py.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func compute(raw json.RawMessage) verdict {
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil { // integers stay int64, as from the API server
		return verdict{Status: "Error", Message: err.Error()}
	}
	result, err := status.Compute(obj)
	if err != nil {
		return verdict{Status: "Error", Message: err.Error()}
	}
	return verdict{Status: string(result.Status), Message: result.Message}
}

func main() {
	var input map[string]json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-of: stdin is not a JSON object:", err)
		os.Exit(2)
	}
	out := map[string]verdict{}
	if _, single := input["kind"]; single {
		whole, _ := json.Marshal(input)
		out["object"] = compute(whole)
	} else {
		for label, raw := range input {
			out[label] = compute(raw)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
