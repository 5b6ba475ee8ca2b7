// Package server runs one movieapp service instance: it parses the shared
// configuration, binds the listener, registers the instance in Consul, serves
// HTTP with the operational routes (/health, /ready, /metrics), and on
// SIGTERM deregisters, drains and shuts down in that order.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/logging"
)

// Config is what every service instance needs to run. Service-specific
// settings live next to the service and use the same FlagSet.
type Config struct {
	Service    string // name registered in Consul
	InstanceID string // "<service>-<uuid>", new for every start

	Host          string // interface to listen on; "" means all
	Port          int    // 0 picks a free port (tests use it)
	AdvertiseAddr string // host[:port] to register instead of the derived one

	ConsulAddr string // host:port of the Consul agent's HTTP API
	Discovery  discovery.Config

	// Drain is how long the instance keeps serving after it deregistered,
	// so that gateways notice before its listener closes.
	Drain time.Duration
	// ShutdownTimeout bounds http.Server.Shutdown. Drain plus this stays
	// under Docker's default 10s stop grace period.
	ShutdownTimeout time.Duration

	LogFormat string
	LogLevel  slog.Level
	AccessLog bool // one log line per request; off by default (it costs throughput)
	Pprof     bool // serve /debug/pprof/ (for profiling; off by default)

	HealthCheck bool // probe a running instance's /ready on Port and exit
}

// envNames maps flags to the environment variables read when the flag is not
// given. CONSUL_HTTP_ADDR is the name consul/api itself reads.
var envNames = map[string]string{
	"host":               "HOST",
	"port":               "PORT",
	"advertise-addr":     "ADVERTISE_ADDR",
	"consul-addr":        consul.HTTPAddrEnvName,
	"ttl":                "HEARTBEAT_TTL",
	"heartbeat-interval": "HEARTBEAT_INTERVAL",
	"deregister-after":   "DEREGISTER_AFTER",
	"start-timeout":      "CONSUL_START_TIMEOUT",
	"drain":              "DRAIN_TIMEOUT",
	"shutdown-timeout":   "SHUTDOWN_TIMEOUT",
	"log-format":         "LOG_FORMAT",
	"log-level":          "LOG_LEVEL",
	"access-log":         "ACCESS_LOG",
	"pprof":              "PPROF",
}

// NewFlagSet returns a FlagSet with the shared flags bound to cfg, which
// starts with the defaults for service on defaultPort. Services add their
// own flags to it, then call Parse.
func NewFlagSet(service string, defaultPort int, cfg *Config) *flag.FlagSet {
	*cfg = Config{
		Service:         service,
		InstanceID:      discovery.NewInstanceID(service),
		Port:            defaultPort,
		ConsulAddr:      "127.0.0.1:8500",
		Discovery:       discovery.DefaultConfig(),
		Drain:           time.Second,
		ShutdownTimeout: 5 * time.Second,
		LogFormat:       logging.FormatAuto,
	}
	fs := flag.NewFlagSet(service, flag.ContinueOnError)
	fs.StringVar(&cfg.Host, "host", cfg.Host, "interface to listen on (default all interfaces)")
	fs.IntVar(&cfg.Port, "port", cfg.Port, "TCP port to listen on; 0 picks a free one")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "host[:port] to register in Consul (default: -host if set, else the first non-loopback IPv4)")
	fs.StringVar(&cfg.ConsulAddr, "consul-addr", cfg.ConsulAddr, "Consul agent HTTP address")
	fs.DurationVar(&cfg.Discovery.TTL, "ttl", cfg.Discovery.TTL, "TTL of the Consul health check")
	fs.DurationVar(&cfg.Discovery.HeartbeatInterval, "heartbeat-interval", 0, "how often to renew the TTL (default a third of -ttl)")
	fs.DurationVar(&cfg.Discovery.DeregisterAfter, "deregister-after", cfg.Discovery.DeregisterAfter, "how long Consul keeps a critical instance before reaping it (minimum 1m)")
	fs.DurationVar(&cfg.Discovery.StartTimeout, "start-timeout", cfg.Discovery.StartTimeout, "how long to keep retrying an unreachable Consul at start")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "how long to keep serving after deregistering")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "deadline for in-flight requests at shutdown")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log format: auto (text on a terminal, else JSON), json or text")
	fs.TextVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	fs.BoolVar(&cfg.AccessLog, "access-log", false, "log one line per request")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof/ for profiling")
	fs.BoolVar(&cfg.HealthCheck, "healthcheck", false, "probe the instance listening on -port and exit 0 if it is ready (for container healthchecks)")
	return fs
}

// Load parses the configuration (see Parse) and builds the logger it asks
// for, with the service name and instance ID on every line.
func Load(fs *flag.FlagSet, cfg *Config, args []string, getenv func(string) string, stderr io.Writer) (*slog.Logger, error) {
	fs.SetOutput(stderr)
	if err := Parse(fs, cfg, args, getenv); err != nil {
		return nil, err
	}
	return logging.New(stderr, cfg.LogFormat, cfg.LogLevel, "service", cfg.Service, "instance_id", cfg.InstanceID)
}

// Parse parses args into fs, then fills every flag not given on the command
// line from its environment variable (envNames, or the upper-case snake name
// of the flag), and checks the result.
func Parse(fs *flag.FlagSet, cfg *Config, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || f.Name == "healthcheck" {
			return
		}
		env, ok := envNames[f.Name]
		if !ok {
			env = strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		}
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return cfg.check()
}

func (c *Config) check() error {
	d := &c.Discovery
	if d.HeartbeatInterval == 0 {
		d.HeartbeatInterval = d.TTL / 3
	}
	switch {
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("port %d out of range", c.Port)
	case d.TTL < time.Second:
		// Consul's TTL has second granularity in practice; less only flaps.
		return fmt.Errorf("ttl %s: must be at least 1s", d.TTL)
	case d.HeartbeatInterval <= 0 || d.HeartbeatInterval >= d.TTL:
		return fmt.Errorf("heartbeat interval %s must be positive and shorter than the TTL %s", d.HeartbeatInterval, d.TTL)
	case d.DeregisterAfter < time.Minute:
		return fmt.Errorf("deregister-after %s: Consul's minimum is 1m", d.DeregisterAfter)
	case c.Drain < 0 || c.ShutdownTimeout <= 0 || d.StartTimeout <= 0:
		return errors.New("drain must not be negative; shutdown and start timeouts must be positive")
	}
	return nil
}

// LogValue logs the effective configuration once at start. It holds no
// secret: the Consul token is read by consul/api from the environment and is
// never part of Config.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host), slog.Int("port", c.Port),
		slog.String("advertise_addr", c.AdvertiseAddr), slog.String("consul_addr", c.ConsulAddr),
		slog.Duration("ttl", c.Discovery.TTL), slog.Duration("heartbeat_interval", c.Discovery.HeartbeatInterval),
		slog.Duration("deregister_after", c.Discovery.DeregisterAfter), slog.Duration("start_timeout", c.Discovery.StartTimeout),
		slog.Duration("drain", c.Drain), slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Bool("access_log", c.AccessLog), slog.Bool("pprof", c.Pprof),
	)
}

// ConsulClient returns a consul/api client for ConsulAddr. Starting from
// consul.DefaultConfig keeps CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE,
// CONSUL_CACERT, CONSUL_CLIENT_CERT and the other standard variables working.
func (c Config) ConsulClient() (*consul.Client, error) {
	cc := consul.DefaultConfig()
	cc.Address = c.ConsulAddr
	client, err := consul.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", c.ConsulAddr, err)
	}
	return client, nil
}

// advertise returns the instance callers should reach, given the port the
// listener actually bound.
func (c Config) advertise(boundPort int) (discovery.Instance, error) {
	inst := discovery.Instance{ID: c.InstanceID, Service: c.Service, Port: boundPort}
	switch {
	case c.AdvertiseAddr != "":
		host, port, err := net.SplitHostPort(c.AdvertiseAddr)
		if err != nil { // no port given: a bare host
			host, port = c.AdvertiseAddr, ""
		}
		inst.Host = host
		if port != "" {
			if inst.Port, err = strconv.Atoi(port); err != nil {
				return inst, fmt.Errorf("advertise-addr %q: bad port", c.AdvertiseAddr)
			}
		}
	case c.Host == "localhost":
		// Registering the name "localhost" only works for callers that
		// happen to share the host; an address says what it means.
		inst.Host = "127.0.0.1"
	case c.Host != "" && !net.ParseIP(c.Host).IsUnspecified():
		inst.Host = c.Host
	default:
		inst.Host = firstIPv4()
	}
	if h := inst.Host; h == "" || h == "localhost" || net.ParseIP(h).IsUnspecified() {
		return inst, fmt.Errorf("advertise address %q is not reachable by other processes", h)
	}
	return inst, nil
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

// Main is the whole of a service's main function: it runs run with a
// context that ends on SIGINT or SIGTERM, and exits 1 with the error if run
// fails (0 for -h).
func Main(service string, run func(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", service, err)
		os.Exit(1)
	}
}
