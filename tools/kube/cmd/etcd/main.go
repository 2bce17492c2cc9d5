// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain) at the
// version Kubernetes v1.34.1 is built and tested with, so the local cluster's
// etcd comes from the same module graph as kube-apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
