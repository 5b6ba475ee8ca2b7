package storeapp_test

import (
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"movieexample.com/pkg/store"
	"movieexample.com/pkg/storeapp"
)

// TestDatabaseURLFlag checks the -database-url flag a store-backed binary
// has (ParseConfig): store.DefaultURL by default, filled from
// DATABASE_URL, the flag winning over the variable, and a clear error when
// there is no default and nothing was given. No default is "memory" any
// more, even inside a test binary: a test that starts a service says
// DATABASE_URL=memory itself.
func TestDatabaseURLFlag(t *testing.T) {
	tests := []struct {
		name    string
		noHome  bool
		args    []string
		env     map[string]string
		want    string // the Config's String()
		wantErr error
	}{
		{name: "default is the SQLite file", want: "sqlite:" + filepath.Join("/srv/data", "movieapp", "rating.db")},
		{name: "from DATABASE_URL", env: map[string]string{"DATABASE_URL": "sqlite:/tmp/x.db"}, want: "sqlite:/tmp/x.db"},
		{name: "memory from DATABASE_URL", env: map[string]string{"DATABASE_URL": "memory"}, want: "memory"},
		{name: "postgres, password masked", env: map[string]string{"DATABASE_URL": "postgres://u:s3cret@db/movieapp"},
			want: "postgres://u:xxxxx@db/movieapp"},
		{name: "flag over DATABASE_URL", args: []string{"-database-url", "memory"},
			env: map[string]string{"DATABASE_URL": "sqlite:/tmp/x.db"}, want: "memory"},
		{name: "bad URL", env: map[string]string{"DATABASE_URL": "mysql://db/x"}, wantErr: store.ErrBadURL},
		{name: "no home and nothing given", noHome: true, wantErr: store.ErrNoDefaultPath},
		{name: "no home, given", noHome: true, args: []string{"-database-url", "memory"}, want: "memory"},
		{name: "no home, healthcheck opens no store", noHome: true, args: []string{"-healthcheck"}, want: "(none)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", "/srv/data")
			if tt.noHome {
				if runtime.GOOS != "linux" {
					t.Skip("SKIP: clearing HOME removes the default path on Linux only")
				}
				t.Setenv("XDG_DATA_HOME", "")
				t.Setenv("HOME", "")
			}
			cfg, err := storeapp.ParseConfig("rating", 0, tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ParseConfig error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := cfg.Store.String(); got != tt.want {
				t.Errorf("store = %q, want %q", got, tt.want)
			}
		})
	}
}
