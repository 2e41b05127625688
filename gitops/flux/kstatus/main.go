// kstatus-of prints what Flux's health assessment computes for Kubernetes objects given as JSON on
// stdin (one object, or a JSON object of label -> object):
//   - "status"/"message": kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute), what Flux's
//     kustomize-controller and helm-controller use for `wait` and healthChecks;
//   - "cel" (with -cel FILE, a JSON object with the keys current, failed, inProgress): the result of
//     Flux's own evaluator for a Kustomization's healthCheckExprs (fluxcd/pkg/runtime/cel).
//
// Output: label -> verdict, as JSON. Built and run by e2e/kstatus.py.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	CEL     string `json:"cel,omitempty"`
}

func compute(raw json.RawMessage, evaluator *cel.StatusEvaluator) verdict {
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil { // integers stay int64, as from the API server
		return verdict{Status: "Error", Message: err.Error()}
	}
	v := verdict{}
	if result, err := status.Compute(obj); err != nil {
		v.Status, v.Message = "Error", err.Error()
	} else {
		v.Status, v.Message = string(result.Status), result.Message
	}
	if evaluator != nil {
		if result, err := evaluator.Evaluate(context.Background(), obj); err != nil {
			v.CEL = "Error: " + err.Error()
		} else {
			v.CEL = string(result.Status)
		}
	}
	return v
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus-of: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	celFile := flag.String("cel", "", "JSON file with the healthCheckExprs keys current, failed, inProgress")
	flag.Parse()
	var evaluator *cel.StatusEvaluator
	if *celFile != "" {
		data, err := os.ReadFile(*celFile)
		if err != nil {
			fail("%v", err)
		}
		var exprs kustomize.HealthCheckExpressions
		if err := json.Unmarshal(data, &exprs); err != nil {
			fail("%s: %v", *celFile, err)
		}
		if evaluator, err = cel.NewStatusEvaluator(&exprs); err != nil {
			fail("%s: %v", *celFile, err)
		}
	}
	var input map[string]json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fail("stdin is not a JSON object: %v", err)
	}
	out := map[string]verdict{}
	if _, single := input["kind"]; single {
		whole, _ := json.Marshal(input)
		out["object"] = compute(whole, evaluator)
	} else {
		for label, raw := range input {
			out[label] = compute(raw, evaluator)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
