//go:build tools

// Package tools pins the helm command that scripts/build-helm.sh builds from
// this module's graph (helm.sh/helm/v4 v4.3.2), so `go mod tidy` keeps it and
// go.sum covers it. Nothing built from here is committed.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
