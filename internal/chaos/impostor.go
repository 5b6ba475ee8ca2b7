package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// The scenarios of this file put an entry in Consul in front of a server
// that is not the instance it names. Nothing fails: the server answers,
// quickly, with a 404 that movie's clients read as "no such movie" or "no
// rating yet". The answers are wrong, and only checking them against the
// seed catalogue shows it.

// addressReuse returns the run of a scenario in which an instance of victim
// is SIGKILLed and an instance of impostor starts at once on its address
// (host:port), while Consul still lists the dead victim there as passing:
// until its TTL runs out, the victim's entry leads to the impostor, whose
// mux answers the victim's route 404 "no route".
func addressReuse(victim, impostor string) func(ctx context.Context, e *Env, r *Result) error {
	return func(ctx context.Context, e *Env, r *Result) error {
		if err := hold(ctx, e.cfg.Hold); err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(e.cfg.Seed, 3))
		dead := e.instances[victim][rng.IntN(len(e.instances[victim]))]
		_, port, err := net.SplitHostPort(dead.Addr)
		if err != nil {
			return err
		}
		killed := time.Now()
		dead.Kill()
		e.forget(dead)
		// The dead process's listening socket is gone with it, so its port
		// is free to bind at once (its connections left in TIME_WAIT do not
		// stop a listener: Go sets SO_REUSEADDR).
		in, err := e.startInstance(ctx, impostor, false, "-port", port)
		if err != nil {
			return fmt.Errorf("start %s on the killed %s's address %s: %w", impostor, dead.label, dead.Addr, err)
		}
		r.effect("SIGKILL to impostor registered, same address", time.Since(killed))
		e.progress("%s killed; %s took its address %s", dead.label, in.label, in.Addr)

		at, err := e.movieSees(ctx, victim, killed, settle, func(s []string) bool { return !contains(s, dead.advertised) })
		if err != nil {
			return fmt.Errorf("movie never dropped the killed %s: %w", dead.label, err)
		}
		r.effect("SIGKILL to dead entry out of movie's view", at.Sub(killed))
		// Past the TTL, the dead entry has lapsed in Consul whatever movie
		// did about it; the load then meets the impostor as what it is.
		if err := hold(ctx, max(e.cfg.Hold, time.Until(killed.Add(ttl+time.Second)))); err != nil {
			return err
		}
		if n, err := requestsByCode(e.probe, in.Addr, "unmatched"); err == nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s answered %.0f requests on routes it does not serve (meant for %s)",
				in.label, sum(n), victim))
		}
		// Back to two of each under load: the impostor is stopped, a new
		// victim started.
		return baseline(ctx, e)
	}
}

// foreignEntry registers, through Consul's API, a rating and a metadata
// entry without any check at the address of a server that is no movieapp
// instance. Consul lists an entry without checks as passing for as long
// as it stays registered: no TTL will ever drop it.
func foreignEntry(ctx context.Context, e *Env, r *Result) error {
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	fs, err := startForeignServer()
	if err != nil {
		return err
	}
	defer fs.close()
	host, portStr, _ := net.SplitHostPort(fs.Addr)
	port, _ := strconv.Atoi(portStr)

	var ids []string
	// Whatever goes wrong below, the entries must not outlive the scenario:
	// nothing else would ever remove them.
	defer func() {
		for _, id := range ids {
			_ = e.consul.Agent().ServiceDeregister(id)
		}
	}()
	registered := time.Now()
	for _, service := range []string{"rating", "metadata"} {
		id := "foreign-" + service
		reg := &consul.AgentServiceRegistration{ID: id, Name: service, Address: host, Port: port}
		if err := e.consul.Agent().ServiceRegister(reg); err != nil {
			return fmt.Errorf("register the foreign %s entry: %w", service, err)
		}
		ids = append(ids, id)
	}
	e.progress("check-less rating and metadata entries registered at %s, where every path answers 404", fs.Addr)
	if err := hold(ctx, 2*e.cfg.Hold); err != nil {
		return err
	}

	for _, service := range []string{"rating", "metadata"} {
		rec, seen := e.movieLog.find(registered, func(rec logRecord) bool {
			return rec.Msg == "discovered instances changed" && rec.Target == service && contains(rec.Instances, fs.Addr)
		})
		took := time.Duration(-1)
		if seen {
			took = rec.Time.Sub(registered)
		}
		r.effect("registered to foreign "+service+" entry in movie's view", took)
	}
	r.Notes = append(r.Notes, fmt.Sprintf("the foreign server answered %d requests", fs.served.Load()))

	for _, id := range ids {
		if err := e.consul.Agent().ServiceDeregister(id); err != nil {
			return fmt.Errorf("deregister %s: %w", id, err)
		}
	}
	ids = nil
	e.progress("foreign entries deregistered")
	return e.settled(ctx)
}

// foreignServer is an HTTP server on loopback that is not a movieapp
// instance, as any other server behind a stale or foreign entry is: it
// answers every request 404 {"error":"no route"}.
type foreignServer struct {
	Addr   string
	served atomic.Int64

	srv  *http.Server
	done sync.WaitGroup
}

func startForeignServer() (*foreignServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fs := &foreignServer{Addr: ln.Addr().String()}
	fs.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fs.served.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"no route"}` + "\n"))
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          discardLogger,
	}
	fs.done.Add(1)
	go func() {
		defer fs.done.Done()
		_ = fs.srv.Serve(ln)
	}()
	return fs, nil
}

func (fs *foreignServer) close() {
	_ = fs.srv.Close()
	fs.done.Wait()
}
