package chaos

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// slowProxy is an HTTP reverse proxy on loopback that holds every answer
// of its backend for a delay that can be changed at any time. An instance
// that registers the proxy's address (-advertise-addr) answers slowly to
// its callers without any code in the service built for the purpose; its
// heartbeats, which go straight to Consul, stay on time, as they do when a
// real instance is slow on its request path only.
type slowProxy struct {
	Addr string // host:port callers reach the proxy on

	delay   atomic.Int64 // nanoseconds
	backend atomic.Pointer[url.URL]
	ready   chan struct{}
	once    sync.Once
	srv     *http.Server
	served  sync.WaitGroup
}

// startSlowProxy listens on a free loopback port. Requests wait for
// setBackend, so the instance can be started with the proxy's address
// before the proxy knows the instance's.
func startSlowProxy() (*slowProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &slowProxy{Addr: ln.Addr().String(), ready: make(chan struct{})}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.backend.Load())
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256},
		ModifyResponse: func(resp *http.Response) error {
			// Hold the answer, not the request: the instance serves every
			// attempt it is sent, and the caller sees it slow.
			return sleepCtx(resp.Request.Context(), time.Duration(p.delay.Load()))
		},
		ErrorLog: discardLogger,
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-p.ready:
			case <-r.Context().Done():
				return
			}
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          discardLogger,
	}
	p.served.Add(1)
	go func() {
		defer p.served.Done()
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

// setBackend points the proxy at the instance's own address.
func (p *slowProxy) setBackend(addr string) {
	p.backend.Store(&url.URL{Scheme: "http", Host: addr})
	p.once.Do(func() { close(p.ready) })
}

// setDelay changes how long answers are held from now on.
func (p *slowProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

// close stops the proxy, dropping requests in flight.
func (p *slowProxy) close() {
	_ = p.srv.Close()
	p.served.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return errors.New("caller gave up")
	case <-t.C:
		return nil
	}
}
