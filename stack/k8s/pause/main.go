// Command pause is the pod sandbox's process: it holds the pod's namespaces,
// reaps zombies (it is PID 1 when the pod shares its process namespace) and
// exits on SIGINT/SIGTERM. Built locally by stack/k8s/images.sh because no
// registry is reachable; containerd runs it as its sandbox_image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
