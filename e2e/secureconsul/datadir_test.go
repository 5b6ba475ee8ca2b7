package secureconsul

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunToExitLeavesTheUsersDataAlone runs each service through
// runToExit, which starts a binary with the test's own environment as this
// package's tests do, with HOME and XDG_DATA_HOME pointing at an empty
// directory and no DATABASE_URL: left to their defaults, the services would
// create, migrate and seed $XDG_DATA_HOME/movieapp/*.db, the files `make
// run` keeps the user's data in. Each exits for want of a token; nothing may
// appear in that directory. (cluster.Start, the other way this package
// starts a service, has its own test in internal/cluster.)
func TestRunToExitLeavesTheUsersDataAlone(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", home)
	t.Setenv("DATABASE_URL", "") // restored at the end of the test
	os.Unsetenv("DATABASE_URL")
	agent, _ := aclAgent(t)

	for _, s := range []string{"metadata", "rating", "movie"} {
		t.Run(s, func(t *testing.T) {
			if code, stderr := runToExit(t, s, agent.Addr, env()); code == 0 {
				t.Fatalf("exit code 0 without a token, want non-zero; stderr:\n%s", stderr)
			}
		})
	}

	var created []string
	err := filepath.WalkDir(home, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != home {
			rel, _ := filepath.Rel(home, path)
			created = append(created, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(created) > 0 {
		t.Errorf("runToExit wrote into HOME/XDG_DATA_HOME (%s), a user's data directory:\n  %s",
			home, strings.Join(created, "\n  "))
	}
}
