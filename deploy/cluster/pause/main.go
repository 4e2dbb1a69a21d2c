// Command pause is the pod sandbox's process in the TestCluster tests'
// node (deploy/cluster): it holds the pod's namespaces and waits for
// SIGTERM or SIGINT, as Kubernetes' pause does. It is built statically and
// put into a one-file image by the test, so that no image is pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
