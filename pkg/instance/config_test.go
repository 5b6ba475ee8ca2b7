package instance_test

import (
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"movieexample.com/pkg/instance"
)

func TestParseEnvironmentFallback(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want      func(c *instance.Config) // what parsing changes in the defaults
		wantInErr string                   // "" for no error
	}{
		{name: "defaults", want: func(c *instance.Config) {
			c.Port, c.ConsulAddr = 8082, "127.0.0.1:8500"
			c.Discovery.TTL, c.Discovery.HeartbeatInterval = 5*time.Second, 5*time.Second/3
			c.Discovery.DeregisterAfter, c.Discovery.StartTimeout = time.Minute, 30*time.Second
			c.Drain, c.ShutdownTimeout = time.Second, 5*time.Second
		}},
		{name: "env when no flag", env: map[string]string{"PORT": "9000", "CONSUL_HTTP_ADDR": "consul:8500"},
			want: func(c *instance.Config) { c.Port, c.ConsulAddr = 9000, "consul:8500" }},
		{name: "flag wins over env", args: []string{"-port", "9001"}, env: map[string]string{"PORT": "9000"},
			want: func(c *instance.Config) { c.Port = 9001 }},
		{name: "every shared setting from its variable", env: map[string]string{
			"HOST": "127.0.0.1", "ADVERTISE_ADDR": "10.0.0.7:80",
			"HEARTBEAT_TTL": "6s", "HEARTBEAT_INTERVAL": "1s", "DEREGISTER_AFTER": "2m", "CONSUL_START_TIMEOUT": "3s",
			"DRAIN_TIMEOUT": "0s", "SHUTDOWN_TIMEOUT": "4s",
			"LOG_FORMAT": "text", "LOG_LEVEL": "debug", "ACCESS_LOG": "true", "PPROF": "1",
			"MAX_INFLIGHT": "7",
		}, want: func(c *instance.Config) {
			c.MaxInFlight = 7
			c.Host, c.AdvertiseAddr = "127.0.0.1", "10.0.0.7:80"
			c.Discovery.TTL, c.Discovery.HeartbeatInterval = 6*time.Second, time.Second
			c.Discovery.DeregisterAfter, c.Discovery.StartTimeout = 2*time.Minute, 3*time.Second
			c.Drain, c.ShutdownTimeout = 0, 4*time.Second
			c.LogFormat, c.LogLevel, c.AccessLog, c.Pprof = "text", slog.LevelDebug, true, true
		}},
		{name: "registration attributes from flags", args: []string{"-weight", "9", "-tags", "canary, v2,", "-meta", "version=v2,team=films"},
			want: func(c *instance.Config) {
				c.Weight, c.Tags, c.Meta = 9, []string{"canary", "v2"}, map[string]string{"version": "v2", "team": "films"}
			}},
		{name: "registration attributes from the environment", env: map[string]string{"SERVICE_WEIGHT": "3", "SERVICE_TAGS": "canary", "SERVICE_META": "version=v2"},
			want: func(c *instance.Config) {
				c.Weight, c.Tags, c.Meta = 3, []string{"canary"}, map[string]string{"version": "v2"}
			}},
		{name: "weight under 1", args: []string{"-weight", "0"}, wantInErr: "weight 0"},
		{name: "meta without a value", args: []string{"-meta", "version"}, wantInErr: "want key=value"},
		{name: "meta setting the identity", args: []string{"-meta", "movieapp_instance=rating/x"}, wantInErr: "identity"},
		{name: "heartbeat a third of the TTL", args: []string{"-ttl", "9s"},
			want: func(c *instance.Config) {
				c.Discovery.TTL, c.Discovery.HeartbeatInterval = 9*time.Second, 3*time.Second
			}},
		{name: "healthcheck has no variable", env: map[string]string{"HEALTHCHECK": "true"}, want: func(*instance.Config) {}},
		{name: "healthcheck flag", args: []string{"-healthcheck"}, want: func(c *instance.Config) { c.HealthCheck = true }},
		{name: "bad env value", env: map[string]string{"PORT": "eighty"}, wantInErr: `PORT="eighty"`},
		{name: "bad log level from env", env: map[string]string{"LOG_LEVEL": "loud"}, wantInErr: "LOG_LEVEL"},
		{name: "port out of range", args: []string{"-port", "70000"}, wantInErr: "port 70000 out of range"},
		{name: "TTL under a second", args: []string{"-ttl", "500ms"}, wantInErr: "at least 1s"},
		{name: "heartbeat not shorter than TTL", args: []string{"-ttl", "2s", "-heartbeat-interval", "2s"}, wantInErr: "shorter than the TTL"},
		{name: "reaping under Consul's minimum", args: []string{"-deregister-after", "30s"}, wantInErr: "minimum is 1m"},
		{name: "negative drain", args: []string{"-drain", "-1s"}, wantInErr: "drain must not be negative"},
		{name: "no limit", args: []string{"-max-inflight", "0"}, want: func(c *instance.Config) { c.MaxInFlight = 0 }},
		{name: "negative limit", args: []string{"-max-inflight", "-1"}, wantInErr: "max-inflight -1"},
		{name: "unknown log format", args: []string{"-log-format", "xml"}, wantInErr: "xml"},
		{name: "unknown flag", args: []string{"-nope"}, wantInErr: "-nope"},
		{name: "unknown trace sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, wantInErr: "OTEL_TRACES_SAMPLER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := instance.DefaultConfig("rating", 8082)
			want := got
			fs := got.FlagSet(io.Discard)
			err := got.Parse(fs, tt.args, func(k string) string { return tt.env[k] })
			if tt.wantInErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantInErr) {
					t.Fatalf("Parse: err = %v, want an error containing %q", err, tt.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.want(&want)
			// Read from the OTEL_* variables, checked in pkg/tracing.
			want.Tracing = got.Tracing
			if !reflect.DeepEqual(got, want) {
				t.Errorf("config\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDefaultConfigNewInstanceID(t *testing.T) {
	a, b := instance.DefaultConfig("rating", 1), instance.DefaultConfig("rating", 1)
	if !strings.HasPrefix(a.InstanceID, "rating-") || a.InstanceID == b.InstanceID {
		t.Errorf("instance IDs %q, %q: want a new rating-<uuid> for every config", a.InstanceID, b.InstanceID)
	}
}
