package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad -build-b fails before anything starts: no Consul, no build, so
// these cases return at once and need no bin/consul.
func TestBuildBIsCheckedUpFront(t *testing.T) {
	// build makes the three binaries in a new directory, all but skip, as
	// files or, with os.ModeDir, as directories of mode.
	build := func(mode os.FileMode, skip string) string {
		t.Helper()
		dir := t.TempDir()
		for _, s := range []string{"movie", "metadata", "rating"} {
			if s != skip {
				path := filepath.Join(dir, s)
				var err error
				if mode.IsDir() {
					err = os.Mkdir(path, mode.Perm())
				} else {
					err = os.WriteFile(path, []byte("#!/bin/sh\n"), mode)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		return dir
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no such directory", []string{"-build-b", filepath.Join(t.TempDir(), "nope")}, "-build-b:"},
		{"a binary missing", []string{"-build-b", build(0o755, "rating")}, "rating: no such file"},
		{"not executable", []string{"-build-b", build(0o644, "")}, "is not an executable file"},
		{"directories, not binaries", []string{"-build-b", build(os.ModeDir|0o755, "")}, "is not an executable file"},
		{"with -overload", []string{"-overload", "-build-b", build(0o755, "")}, "no -movie-b, -build-b or -profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}
