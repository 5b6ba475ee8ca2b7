// Package freeport finds free TCP ports on loopback for the servers that
// movieapp's tests and harnesses start (Consul, Jaeger), which take their
// ports as arguments rather than binding port 0 themselves.
package freeport

import "net"

// Loopback asks the kernel for n distinct free 127.0.0.1 TCP ports. Another
// process could take one between here and the server's bind; in practice on
// a test machine that does not happen, and a failed start says so clearly.
func Loopback(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
