// Package deploy holds smartauth's Kubernetes manifests, a Kustomize base,
// and loads them as typed Kubernetes objects so that tests can check them.
// Nothing in the server imports it.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// Kustomization is the part of kustomization.yaml this base uses. Decoding
// is strict, so a field added there (a patch, a generator, a label) fails
// Load until Load applies it too, and Load never shows less than
// "kubectl apply -k" would apply.
type Kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// Set is the base as Kubernetes objects, each decoded strictly: a field
// the Kubernetes API does not know is an error, as it is to the API server.
type Set struct {
	Deployment *appsv1.Deployment
	Service    *corev1.Service
	PDB        *policyv1.PodDisruptionBudget
	// Files maps each resource file to the kinds it holds, in order.
	Files map[string][]string
}

// Load reads the Kustomize base in dir.
func Load(dir string) (*Set, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k Kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("kustomization.yaml is %s %s, not a kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	s := &Set{Files: map[string][]string{}}
	for _, res := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			return nil, err
		}
		for i, doc := range splitDocuments(b) {
			kind, err := s.add(doc)
			if err != nil {
				return nil, fmt.Errorf("%s, document %d: %w", res, i+1, err)
			}
			s.Files[res] = append(s.Files[res], kind)
		}
	}
	if s.Deployment == nil || s.Service == nil || s.PDB == nil {
		return nil, errors.New("the base lacks a Deployment, a Service or a PodDisruptionBudget")
	}
	return s, nil
}

// add decodes one object into its typed field.
func (s *Set) add(doc []byte) (string, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return "", err
	}
	var into any
	switch head.APIVersion + " " + head.Kind {
	case "apps/v1 Deployment":
		if s.Deployment != nil {
			return "", errors.New("a second Deployment")
		}
		s.Deployment = &appsv1.Deployment{}
		into = s.Deployment
	case "v1 Service":
		if s.Service != nil {
			return "", errors.New("a second Service")
		}
		s.Service = &corev1.Service{}
		into = s.Service
	case "policy/v1 PodDisruptionBudget":
		if s.PDB != nil {
			return "", errors.New("a second PodDisruptionBudget")
		}
		s.PDB = &policyv1.PodDisruptionBudget{}
		into = s.PDB
	default:
		return "", fmt.Errorf("unexpected object %s %s", head.APIVersion, head.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		return "", fmt.Errorf("%s: %w", head.Kind, err)
	}
	return head.Kind, nil
}

// splitDocuments splits a YAML stream at its "---" lines, leaving out
// documents that hold only comments or nothing.
func splitDocuments(b []byte) [][]byte {
	var out [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		var v any
		if yaml.Unmarshal(doc, &v) == nil && v != nil {
			out = append(out, doc)
		}
	}
	return out
}
