package bench

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// The reference systems' processes. Each is the benchmark's own binary
// started again with `serve ROLE`, so that each reference process is measured
// on its own (CPU, RSS) as each movieapp service is.
const (
	roleMetadata = "metadata-backend"
	roleRating   = "rating-backend"
	roleFloor    = "floor-gateway"
	roleLookup   = "lookup-gateway"
)

// ErrUnknownRole means Serve was asked for a role it does not know.
var ErrUnknownRole = errors.New("unknown role")

// Serve runs one reference process: it listens on a free loopback port,
// writes "listening ADDR" on stdout and serves until ctx ends. It returns
// ErrUnknownRole, a flag error, or the server's error.
func Serve(ctx context.Context, role string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	mdAddr := fs.String("metadata", "", "metadata backends: host:port,... (floor) or Consul service name (lookup)")
	ratAddr := fs.String("rating", "", "rating backends: host:port,... (floor) or Consul service name (lookup)")
	consulAddr := fs.String("consul-addr", "", "Consul agent HTTP address (lookup)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, h, err := roleHandler(role, *mdAddr, *ratAddr, *consulAddr)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle(path, h)
	// For profiling the references next to movieapp's services (-profile),
	// and their allocation counters in memstats.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/debug/vars", expvar.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	fmt.Fprintln(stdout, "listening", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	<-errc
	return nil
}

// roleHandler returns the one path role serves and its handler. The
// backends are host:port,... for the floor and Consul service names for the
// lookup, whose Consul agent is at consulAddr. It returns ErrUnknownRole for
// a role it does not know.
func roleHandler(role, metadataBackends, ratingBackends, consulAddr string) (string, http.Handler, error) {
	// Each process routes its one path exactly, as movieapp's services do:
	// a catch-all pattern costs net/http allocations on every request.
	switch role {
	case roleMetadata:
		return "/metadata", MetadataBackend(), nil
	case roleRating:
		return "/rating", RatingBackend(), nil
	case roleFloor:
		return "/movie", &Gateway{MetadataTransport: NewTransport(), RatingTransport: NewTransport(), Metadata: Fixed(strings.Split(metadataBackends, ",")...), Rating: Fixed(strings.Split(ratingBackends, ",")...)}, nil
	case roleLookup:
		cfg := consul.DefaultConfig()
		cfg.Address = consulAddr
		// A pool as deep as the load, so the lookup design is measured
		// for its lookups and not for reconnecting to Consul. With
		// consul/api's default pool (GOMAXPROCS+1 idle connections) 64
		// connections of load open more than the 200 connections per
		// client a Consul agent allows, and it answers 429.
		cfg.Transport.MaxIdleConns, cfg.Transport.MaxIdleConnsPerHost = 1024, 256
		client, err := consul.NewClient(cfg)
		if err != nil {
			return "", nil, err
		}
		return "/movie", &Gateway{MetadataTransport: NewTransport(), RatingTransport: NewTransport(), Metadata: ConsulLookup(client, metadataBackends), Rating: ConsulLookup(client, ratingBackends)}, nil
	}
	return "", nil, fmt.Errorf("%w %q", ErrUnknownRole, role)
}
