package flagenv_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"movieexample.com/pkg/flagenv"
)

// settings are the flags of the test FlagSet.
type settings struct {
	ConsulAddr  string
	LogLevel    string
	Port        int
	Drain       time.Duration
	HealthCheck bool
}

// names maps -consul-addr to a variable other than its upper-snake form and
// gives -healthcheck none, as a binary's table does.
var names = map[string]string{"consul-addr": "CONSUL_HTTP_ADDR", "healthcheck": ""}

func newFlagSet(s *settings) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.ConsulAddr, "consul-addr", "127.0.0.1:8500", "")
	fs.StringVar(&s.LogLevel, "log-level", "info", "")
	fs.IntVar(&s.Port, "port", 8080, "")
	fs.DurationVar(&s.Drain, "drain", time.Second, "")
	fs.BoolVar(&s.HealthCheck, "healthcheck", false, "")
	return fs
}

func TestParse(t *testing.T) {
	defaults := settings{ConsulAddr: "127.0.0.1:8500", LogLevel: "info", Port: 8080, Drain: time.Second}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want      func(*settings) // what is changed from the defaults
		wantInErr []string        // parts of the error; nil for none
	}{
		{name: "defaults", want: func(*settings) {}},
		{name: "names map", env: map[string]string{"CONSUL_HTTP_ADDR": "consul:8500"},
			want: func(s *settings) { s.ConsulAddr = "consul:8500" }},
		{name: "mapped flag ignores its upper-snake name", env: map[string]string{"CONSUL_ADDR": "consul:8500"},
			want: func(*settings) {}},
		{name: "upper-snake default", env: map[string]string{"LOG_LEVEL": "debug", "PORT": "9000", "DRAIN": "2s"},
			want: func(s *settings) { s.LogLevel, s.Port, s.Drain = "debug", 9000, 2*time.Second }},
		{name: "empty name disables the variable", env: map[string]string{"HEALTHCHECK": "true"},
			want: func(*settings) {}},
		{name: "flag with no variable still parses", args: []string{"-healthcheck"},
			want: func(s *settings) { s.HealthCheck = true }},
		{name: "flag wins over env", args: []string{"-port", "1", "-consul-addr", "flag:8500"},
			env:  map[string]string{"PORT": "2", "CONSUL_HTTP_ADDR": "env:8500"},
			want: func(s *settings) { s.Port, s.ConsulAddr = 1, "flag:8500" }},
		{name: "flag set to its default still wins", args: []string{"-port", "8080"}, env: map[string]string{"PORT": "2"},
			want: func(*settings) {}},
		{name: "empty variable is unset", env: map[string]string{"PORT": ""}, want: func(*settings) {}},
		{name: "bad value names the variable", env: map[string]string{"PORT": "eighty"},
			wantInErr: []string{`PORT="eighty"`}},
		{name: "every bad value named", env: map[string]string{"PORT": "eighty", "DRAIN": "soon"},
			wantInErr: []string{`PORT="eighty"`, `DRAIN="soon"`}},
		{name: "bad flag", args: []string{"-port", "eighty"}, wantInErr: []string{"-port"}},
		{name: "unknown flag", args: []string{"-nope"}, wantInErr: []string{"-nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got settings
			fs := newFlagSet(&got)
			err := flagenv.Parse(fs, tt.args, func(k string) string { return tt.env[k] }, names)
			if tt.wantInErr != nil {
				if err == nil {
					t.Fatalf("Parse: no error, want one containing %q", tt.wantInErr)
				}
				for _, part := range tt.wantInErr {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("Parse: err = %q, want it to contain %q", err, part)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := defaults
			tt.want(&want)
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}
