package discovery

import (
	"fmt"
	"net"
	"strconv"
)

// Advertise returns the address to register for an instance listening on
// host (the interface it bound, "" for all) and boundPort: advertiseAddr
// when one is given (host, or host:port), else host when it names one
// interface, else the host's first non-loopback IPv4 address. It returns an
// error for a malformed advertiseAddr or an address other processes could
// not reach.
func Advertise(host, advertiseAddr string, boundPort int) (addrHost string, port int, err error) {
	port = boundPort
	switch {
	case advertiseAddr != "":
		h, p, err := net.SplitHostPort(advertiseAddr)
		if err != nil { // no port given: a bare host
			h, p = advertiseAddr, ""
		}
		addrHost = h
		if p != "" {
			if port, err = strconv.Atoi(p); err != nil {
				return "", 0, fmt.Errorf("advertise-addr %q: bad port", advertiseAddr)
			}
		}
	case host == "localhost":
		// Registering the name "localhost" only works for callers that
		// happen to share the host; an address says what it means.
		addrHost = "127.0.0.1"
	case host != "" && !net.ParseIP(host).IsUnspecified():
		addrHost = host
	default:
		addrHost = firstIPv4()
	}
	if h := addrHost; h == "" || h == "localhost" || net.ParseIP(h).IsUnspecified() {
		return "", 0, fmt.Errorf("advertise address %q is not reachable by other processes", h)
	}
	return addrHost, port, nil
}

// firstIPv4 returns the host's first non-loopback IPv4 address (a container's
// own address under docker-compose, even with --scale), else 127.0.0.1.
func firstIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			if ip4 := ipn.IP.To4(); ip4 != nil {
				return ip4.String()
			}
		}
	}
	return "127.0.0.1"
}
