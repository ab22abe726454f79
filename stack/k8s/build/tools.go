//go:build tools

// Package k8sbuild pins the Kubernetes and etcd commands stack/k8s/build.sh
// compiles. k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces
// its staging modules with local paths); depending on it from a module of our
// own that replaces each staging module with its published v0.x release of
// the same Kubernetes release is the documented way.
package k8sbuild

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
