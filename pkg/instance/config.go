package instance

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/flagenv"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/logging"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/tracing"
)

// Config is what every service instance is configured with. Each binary's
// own config struct embeds it and adds its settings to the same FlagSet.
type Config struct {
	Service    string // name registered in Consul
	InstanceID string // "<service>-<uuid>", new for every start

	Host          string // interface to listen on; "" means all
	Port          int    // 0 picks a free port (tests use it)
	AdvertiseAddr string // host[:port] to register instead of the derived one

	ConsulAddr string // host:port of the Consul agent's HTTP API
	Discovery  discovery.Config

	// Weight, Tags and Meta are registered with the instance (Consul's
	// Weights.Passing, Tags, Meta): movie sends each instance calls in
	// proportion to its weight, and can send a share of them to the
	// instances carrying a canary tag.
	Weight int
	Tags   []string
	Meta   map[string]string

	// Drain is how long the instance keeps serving after it deregistered,
	// so that gateways notice before its listener closes.
	Drain time.Duration
	// ShutdownTimeout bounds http.Server.Shutdown. Drain plus this plus
	// TraceFlushTimeout stays under Docker's default 10s stop grace period.
	ShutdownTimeout time.Duration

	// MaxInFlight is how many requests to the service's routes the
	// instance serves at once; one more is answered 503 at once (see
	// limiter). 0 admits every request.
	MaxInFlight int

	LogFormat string
	LogLevel  slog.Level
	AccessLog bool // one log line per request; off by default (it costs throughput)
	Pprof     bool // serve /debug/pprof/ (for profiling; off by default)

	HealthCheck bool // probe a running instance's /ready on Port and exit

	// Tracing is read from OpenTelemetry's standard variables (OTEL_*),
	// not from flags: every OpenTelemetry SDK reads the same ones.
	Tracing tracing.Config
}

// EnvNames maps the shared flags to the environment variables read when the
// flag is not given (see flagenv.Parse); every other flag reads its name in
// upper-case snake form. CONSUL_HTTP_ADDR (discovery.AddrEnv) is the name
// consul/api itself reads; -healthcheck has no variable, since a probe is run by hand.
var EnvNames = map[string]string{
	"host":               "HOST",
	"port":               "PORT",
	"advertise-addr":     "ADVERTISE_ADDR",
	"consul-addr":        discovery.AddrEnv,
	"weight":             "SERVICE_WEIGHT",
	"tags":               "SERVICE_TAGS",
	"meta":               "SERVICE_META",
	"ttl":                "HEARTBEAT_TTL",
	"heartbeat-interval": "HEARTBEAT_INTERVAL",
	"deregister-after":   "DEREGISTER_AFTER",
	"start-timeout":      "CONSUL_START_TIMEOUT",
	"drain":              "DRAIN_TIMEOUT",
	"shutdown-timeout":   "SHUTDOWN_TIMEOUT",
	"max-inflight":       "MAX_INFLIGHT",
	"log-format":         "LOG_FORMAT",
	"log-level":          "LOG_LEVEL",
	"access-log":         "ACCESS_LOG",
	"pprof":              "PPROF",
	"healthcheck":        "",
}

// DefaultConfig returns the defaults of an instance of service on
// defaultPort, with a new instance ID.
func DefaultConfig(service string, defaultPort int) Config {
	return Config{
		Service:         service,
		InstanceID:      discovery.NewInstanceID(service),
		Port:            defaultPort,
		ConsulAddr:      "127.0.0.1:8500",
		Discovery:       discovery.DefaultConfig(),
		Weight:          1,
		Drain:           time.Second,
		ShutdownTimeout: 5 * time.Second,
		MaxInFlight:     DefaultMaxInFlight,
		LogFormat:       logging.FormatAuto,
	}
}

// FlagSet returns a FlagSet for the binary, writing its usage and errors to
// stderr, with the shared flags bound to c (c's values are their defaults).
// The binary adds its own flags, then calls Parse.
func (c *Config) FlagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(c.Service, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Host, "host", c.Host, "interface to listen on (default all interfaces)")
	fs.IntVar(&c.Port, "port", c.Port, "TCP port to listen on; 0 picks a free one")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", c.AdvertiseAddr, "host[:port] to register in Consul (default: -host if set, else the first non-loopback IPv4)")
	fs.StringVar(&c.ConsulAddr, "consul-addr", c.ConsulAddr, "Consul agent HTTP address")
	fs.IntVar(&c.Weight, "weight", c.Weight, "this instance's share of its callers' calls, relative to the other instances' weights (Consul Weights.Passing)")
	fs.Func("tags", "Consul tags to register, comma-separated (e.g. canary)", func(s string) error {
		c.Tags = splitList(s)
		return nil
	})
	fs.Func("meta", "Consul metadata to register, comma-separated key=value pairs (e.g. version=v2)", func(s string) error {
		m, err := parseMeta(s)
		c.Meta = m
		return err
	})
	fs.DurationVar(&c.Discovery.TTL, "ttl", c.Discovery.TTL, "TTL of the Consul health check")
	fs.DurationVar(&c.Discovery.HeartbeatInterval, "heartbeat-interval", 0, "how often to renew the TTL (default a third of -ttl)")
	fs.DurationVar(&c.Discovery.DeregisterAfter, "deregister-after", c.Discovery.DeregisterAfter, "how long Consul keeps a critical instance before reaping it (minimum 1m)")
	fs.DurationVar(&c.Discovery.StartTimeout, "start-timeout", c.Discovery.StartTimeout, "how long to keep retrying an unreachable Consul at start")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "how long to keep serving after deregistering")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "deadline for in-flight requests at shutdown")
	fs.IntVar(&c.MaxInFlight, "max-inflight", c.MaxInFlight, "requests served at once; one more is answered 503 with Retry-After at once (0 admits all)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: auto (text on a terminal, else JSON), json or text")
	fs.TextVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.BoolVar(&c.AccessLog, "access-log", c.AccessLog, "log one line per request")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/ for profiling")
	fs.BoolVar(&c.HealthCheck, "healthcheck", false, "probe the instance listening on -port and exit 0 if it is ready (for container healthchecks)")
	return fs
}

// Parse parses args into fs, every flag not given falling back to its
// environment variable (EnvNames), then checks the shared settings.
func (c *Config) Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := flagenv.Parse(fs, args, getenv, EnvNames); err != nil {
		return err
	}
	tc, err := tracing.FromEnv(getenv, c.Service, c.InstanceID)
	if err != nil {
		return err
	}
	c.Tracing = tc
	c.Tracing.Version = ops.Version
	return c.Check()
}

// Check fills the heartbeat interval left to its default (a third of the
// TTL) and returns an error naming the first setting out of range.
func (c *Config) Check() error {
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
	case c.Weight < 1:
		return fmt.Errorf("weight %d: must be at least 1", c.Weight)
	case c.Drain < 0 || c.ShutdownTimeout <= 0 || d.StartTimeout <= 0:
		return errors.New("drain must not be negative; shutdown and start timeouts must be positive")
	case c.MaxInFlight < 0:
		return fmt.Errorf("max-inflight %d: must be 0 (no limit) or more", c.MaxInFlight)
	}
	if _, err := logging.New(io.Discard, c.LogFormat, c.LogLevel); err != nil {
		return err
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseMeta parses "k=v,k2=v2". Consul checks the keys and values
// themselves when the instance registers; the identity key is refused there
// too (discovery.ErrInvalidInstance), but is worth refusing at start.
func parseMeta(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return nil, fmt.Errorf("meta %q: want key=value", kv)
		}
		if k == identity.MetaKey {
			return nil, fmt.Errorf("meta %s: the instance's identity, set by movieapp itself", k)
		}
		m[k] = strings.TrimSpace(v)
	}
	return m, nil
}

// Attrs returns the settings for the one log line of the effective
// configuration at start (a binary's LogValue starts with them). They hold no secret: the Consul token is read by
// consul/api from the environment and is never part of Config.
func (c Config) Attrs() []slog.Attr {
	return []slog.Attr{
		slog.String("host", c.Host), slog.Int("port", c.Port),
		slog.String("advertise_addr", c.AdvertiseAddr), slog.String("consul_addr", c.ConsulAddr),
		slog.Int("weight", c.Weight), slog.Any("tags", c.Tags), slog.Any("meta", c.Meta),
		slog.Duration("ttl", c.Discovery.TTL), slog.Duration("heartbeat_interval", c.Discovery.HeartbeatInterval),
		slog.Duration("deregister_after", c.Discovery.DeregisterAfter), slog.Duration("start_timeout", c.Discovery.StartTimeout),
		slog.Duration("drain", c.Drain), slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Int("max_inflight", c.MaxInFlight),
		slog.String("log_format", c.LogFormat), slog.String("log_level", c.LogLevel.String()),
		slog.Bool("access_log", c.AccessLog), slog.Bool("pprof", c.Pprof),
		slog.Any("tracing", c.Tracing),
	}
}

// Logger builds the logger c asks for, writing to stderr with the service
// name and instance ID on every line, and logs the binary's whole
// configuration all with it, once: what every binary does first once
// configured.
func Logger(c Config, all slog.LogValuer, stderr io.Writer) (*slog.Logger, error) {
	logger, err := logging.New(stderr, c.LogFormat, c.LogLevel, "service", c.Service, "instance_id", c.InstanceID)
	if err != nil {
		return nil, err
	}
	logger.Info("starting", "config", all)
	return logger, nil
}
