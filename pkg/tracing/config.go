// Package tracing is movieapp's OpenTelemetry tracing: the configuration,
// read from OpenTelemetry's standard environment variables; the tracer
// provider, exporting over OTLP/HTTP through a bounded queue that never
// blocks a request (queue.go); and the server span of every request
// (Handler). With no OTLP endpoint configured tracing is off: Setup returns
// a Tracing whose Handler is the handler itself and whose TracerProvider is
// nil, so the request path pays one check and no span is ever made.
package tracing

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The standard variables Config reads (see FromEnv).
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvSampler        = "OTEL_TRACES_SAMPLER"
	EnvSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"
	EnvServiceName    = "OTEL_SERVICE_NAME"
	EnvResourceAttrs  = "OTEL_RESOURCE_ATTRIBUTES"
	EnvQueueSize      = "OTEL_BSP_MAX_QUEUE_SIZE"
	EnvBatchSize      = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
	EnvBatchDelay     = "OTEL_BSP_SCHEDULE_DELAY"
	EnvExportTimeout  = "OTEL_BSP_EXPORT_TIMEOUT"
	EnvHeaders        = "OTEL_EXPORTER_OTLP_HEADERS"
	EnvTracesHeaders  = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	EnvTimeout        = "OTEL_EXPORTER_OTLP_TIMEOUT"
	EnvTracesTimeout  = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
	EnvCompression    = "OTEL_EXPORTER_OTLP_COMPRESSION"
	EnvTracesCompress = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
)

// unsupported are the exporter's variables movieapp does not implement: a
// start error rather than a setting silently ignored.
var unsupported = []string{
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
	"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
}

// Config is how an instance traces. The zero Config is tracing off.
type Config struct {
	// Endpoint is the OTLP/HTTP URL spans are sent to, path included
	// (http://jaeger:4318/v1/traces); "" turns tracing off.
	Endpoint string
	// Sampler decides which new traces are recorded; SamplerName is how it
	// was configured, for the log.
	Sampler     sdktrace.Sampler
	SamplerName string
	// Resource describes the instance on every span: service.name,
	// service.instance.id, service.version and OTEL_RESOURCE_ATTRIBUTES.
	ServiceName string
	InstanceID  string
	Version     string
	Attributes  []attribute.KeyValue

	// The export queue (queue.go): spans that find it full are dropped,
	// and counted, rather than make a request wait.
	QueueSize     int
	BatchSize     int
	BatchDelay    time.Duration
	ExportTimeout time.Duration

	// The exporter (otlp.go): the headers of every request (for a
	// collector that wants a key), its timeout, and gzip.
	Headers map[string]string
	Timeout time.Duration
	Gzip    bool
}

// Enabled reports whether c traces at all.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// FromEnv returns the configuration of the instance instanceID of service
// that getenv's OpenTelemetry variables describe, or an error naming the
// first one that is invalid or asks for what movieapp does not do.
//
// Tracing is on when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL, /v1/traces appended, as the
// specification says) is set, unless OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none. The protocol is OTLP over HTTP with protobuf.
// OTEL_TRACES_SAMPLER and its argument take the specification's six
// samplers; the default is the SDK's, parentbased_always_on: a request that
// arrives with a sampled traceparent is traced, and so is every new one.
// OTEL_SERVICE_NAME replaces service (the resource's service.name), and
// OTEL_RESOURCE_ATTRIBUTES adds attributes, but service.instance.id is
// always instanceID, the ID the instance logs and registers in Consul.
// The queue follows OTEL_BSP_*, as the SDK's batch processor would, and the
// exporter OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, _TIMEOUT and _COMPRESSION
// (gzip or none); client certificates are not supported (https with the
// system's roots is).
func FromEnv(getenv func(string) string, service, instanceID string) (Config, error) {
	c := Config{ServiceName: service, InstanceID: instanceID, QueueSize: 2048, BatchSize: 512,
		BatchDelay: 5 * time.Second, ExportTimeout: 30 * time.Second, Timeout: 10 * time.Second}
	if v := getenv(EnvServiceName); v != "" {
		c.ServiceName = v
	}
	var err error
	if c.Attributes, err = parseAttributes(EnvResourceAttrs, getenv(EnvResourceAttrs)); err != nil {
		return c, err
	}
	if c.Sampler, c.SamplerName, err = parseSampler(getenv(EnvSampler), getenv(EnvSamplerArg)); err != nil {
		return c, err
	}
	for _, q := range []struct {
		name string
		into *int
	}{{EnvQueueSize, &c.QueueSize}, {EnvBatchSize, &c.BatchSize}} {
		if err := positive(getenv, q.name, q.into); err != nil {
			return c, err
		}
	}
	for _, d := range []struct {
		name string
		into *time.Duration
	}{{EnvBatchDelay, &c.BatchDelay}, {EnvExportTimeout, &c.ExportTimeout}, {EnvTimeout, &c.Timeout}, {EnvTracesTimeout, &c.Timeout}} {
		ms := int(d.into.Milliseconds())
		if err := positive(getenv, d.name, &ms); err != nil {
			return c, err
		}
		*d.into = time.Duration(ms) * time.Millisecond
	}
	c.BatchSize = min(c.BatchSize, c.QueueSize)
	if err := c.exporterSettings(getenv); err != nil {
		return c, err
	}
	if strings.EqualFold(getenv(EnvSDKDisabled), "true") {
		return c, nil
	}
	switch e := getenv(EnvTracesExporter); e {
	case "none":
		return c, nil
	case "", "otlp":
	default:
		return c, fmt.Errorf("%s=%s: movieapp exports with otlp only (or none)", EnvTracesExporter, e)
	}
	// The TRACES_ variable wins over the general one, as for the endpoint.
	for _, p := range []string{EnvTracesProtocol, EnvProtocol} {
		if v := getenv(p); v != "" {
			if v != "http/protobuf" {
				return c, fmt.Errorf("%s=%s: movieapp exports with http/protobuf only", p, v)
			}
			break
		}
	}
	c.Endpoint, err = endpoint(getenv(EnvTracesEndpoint), getenv(EnvEndpoint))
	return c, err
}

// exporterSettings reads the exporter's headers and compression; the
// TRACES_ variables win over the general ones.
func (c *Config) exporterSettings(getenv func(string) string) error {
	c.Headers = map[string]string{}
	for _, name := range []string{EnvHeaders, EnvTracesHeaders} {
		kvs, err := parseAttributes(name, getenv(name))
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			c.Headers[string(kv.Key)] = kv.Value.AsString()
		}
	}
	for _, name := range []string{EnvCompression, EnvTracesCompress} {
		switch v := getenv(name); v {
		case "":
		case "gzip", "none":
			c.Gzip = v == "gzip"
		default:
			return fmt.Errorf("%s=%q: want gzip or none", name, v)
		}
	}
	for _, name := range unsupported {
		if getenv(name) != "" {
			return fmt.Errorf("%s: client certificates for the OTLP exporter are not supported", name)
		}
	}
	return nil
}

// endpoint returns the traces URL: traces as it is, else base with
// /v1/traces appended; "" if neither is set.
func endpoint(traces, base string) (string, error) {
	name, raw := EnvTracesEndpoint, traces
	if raw == "" {
		name, raw = EnvEndpoint, base
	}
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s=%q: want an http:// or https:// URL", name, raw)
	}
	if traces == "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}

// parseSampler returns the sampler the specification's name and argument
// describe; "" is the default, parentbased_always_on.
func parseSampler(name, arg string) (sdktrace.Sampler, string, error) {
	ratio := 1.0
	if arg != "" && strings.HasSuffix(name, "traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, "", fmt.Errorf("%s=%q: want a ratio from 0 to 1", EnvSamplerArg, arg)
		}
		ratio = r
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parentbased_always_on", nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name, nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), name + ":" + strconv.FormatFloat(ratio, 'g', -1, 64), nil
	case "always_on":
		return sdktrace.AlwaysSample(), name, nil
	case "always_off":
		return sdktrace.NeverSample(), name, nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), name + ":" + strconv.FormatFloat(ratio, 'g', -1, 64), nil
	}
	return nil, "", fmt.Errorf("%s=%q: want always_on, always_off, traceidratio or their parentbased_ forms", EnvSampler, name)
}

// parseAttributes parses the variable name's value s, as
// OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS are written:
// key=value pairs, comma-separated, the values percent-encoded.
func parseAttributes(name, s string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	for kv := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", name, kv)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, k, err)
		}
		out = append(out, attribute.String(k, dv))
	}
	return out, nil
}

// positive reads the variable name as a positive integer into *into, left
// as it is when the variable is unset.
func positive(getenv func(string) string, name string, into *int) error {
	v := getenv(name)
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	*into = n
	return nil
}

// LogValue is the configuration's part of the log line at start.
func (c Config) LogValue() slog.Value {
	if !c.Enabled() {
		return slog.GroupValue(slog.Bool("enabled", false))
	}
	endpoint := c.Endpoint
	if u, err := url.Parse(endpoint); err == nil {
		endpoint = u.Redacted()
	}
	// The headers' values are left out: they are usually a key.
	return slog.GroupValue(slog.Bool("enabled", true), slog.String("endpoint", endpoint),
		slog.String("sampler", c.SamplerName), slog.String("service_name", c.ServiceName),
		slog.Int("queue_size", c.QueueSize))
}
