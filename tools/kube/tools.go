//go:build tools

// Package tools pins the Kubernetes programs that scripts/build-kube.sh builds
// from this module's graph (k8s.io/kubernetes v1.34.1, the release StarlingX
// ships as 1.34.1), so `go mod tidy` keeps them and go.sum covers them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
