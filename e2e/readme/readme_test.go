// Package readme executes the examples of README.md, and of the docs/ pages
// that have any, against the real binaries and a real Consul dev agent
// started as `make run` starts them, and fails on every example whose output
// has drifted from what the page shows.
//
// The contract a page follows: a ```console block is executed; in it, a
// "$ " line is a bash command (a trailing "\" continues it) and the lines up
// to the next "$ " line are its output. Every console block of a page runs in
// order against one fresh stack, so state carries from one example to the
// next. Commands name the well-known ports (8081 metadata, 8082 rating, 8083
// movie, 8500 Consul), which the test points at its own. Outputs are compared
// with UUIDs, IPv4 addresses (and ports), X-Request-Id values normalised and
// Date headers dropped; with curl -i, the expected headers are a subset.
package readme

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"movieexample.com/internal/cluster"
)

var binDir string // the binaries built by TestMain

func TestMain(m *testing.M) { cluster.TestMain(m, &binDir) }

// repoRoot returns the top of the repository, found from this file rather
// than the working directory, as internal/cluster does.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestREADME runs every console example of README.md. A README without any
// fails: a page with nothing executed would pass however far it drifted.
func TestREADME(t *testing.T) {
	examples, err := readmeExamples(repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	requireTools(t, "curl", "jq")
	runPage(t, examples)
}

// readmeExamples returns the examples of root's README.md, and an error if
// it has none.
func readmeExamples(root string) ([]Example, error) {
	examples, err := ParseFile(filepath.Join(root, "README.md"), "README.md")
	if err == nil && len(examples) == 0 {
		err = errors.New("README.md has no ```console example: the README test would check nothing")
	}
	return examples, err
}

// TestDocs runs the console examples of each docs/ page that has any, each
// page against a fresh stack of its own.
func TestDocs(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(repoRoot(), "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, page := range pages { // Glob sorts: file order
		name := filepath.ToSlash(filepath.Join("docs", filepath.Base(page)))
		examples, err := ParseFile(page, name)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(examples) == 0 {
			continue
		}
		ran++
		t.Run(filepath.Base(page), func(t *testing.T) {
			requireTools(t, "curl", "jq")
			runPage(t, examples)
		})
	}
	t.Logf("%d of %d docs pages have console examples", ran, len(pages))
}

// runPage starts a fresh stack and runs examples on it in order, one error
// per example that does not match, so one run shows every drift.
func runPage(t *testing.T, examples []Example) {
	t.Helper()
	stack := startStack(t)
	failures, refused := Check(context.Background(), stack, repoRoot(), examples)
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%s: %d examples, %d run: %d passed, %d failed; %d not run (not curl | jq against the stack)",
		examples[0].File, len(examples), len(examples)-refused, len(examples)-len(failures), len(failures)-refused, refused)
}

// Check runs each example on stack from dir and returns a report for each
// one whose output does not match, whose command failed, or whose command
// is not of the contract's form (which is then not run; see CheckCommand);
// refused counts the latter, which are among the failures.
func Check(ctx context.Context, stack *Stack, dir string, examples []Example) (failures []string, refused int) {
	for _, ex := range examples {
		if err := CheckCommand(ex.Command); err != nil {
			failures = append(failures, fmt.Sprintf("%s:%d: $ %s\nNOT RUN: %v", ex.File, ex.Line, ex.Command, err))
			refused++
			continue
		}
		got, err := stack.Run(ctx, dir, ex.Command)
		v := Compare(ex.Want, got, showsHeaders(ex.Command))
		switch {
		case err != nil && v.OK:
			v.Reason = "command failed: " + err.Error()
		case err != nil:
			v.Reason = "command failed: " + err.Error() + "; " + v.Reason
		case v.OK:
			continue
		}
		failures = append(failures, report(ex, v))
	}
	return failures, refused
}

// report says where the example is, what ran, and both outputs as compared.
func report(ex Example, v Verdict) string {
	return fmt.Sprintf("%s:%d: $ %s\n%s\n--- want (normalised):\n%s\n--- got (normalised):\n%s",
		ex.File, ex.Line, ex.Command, v.Reason, indent(v.Want), indent(v.Got))
}

func indent(s string) string {
	if s == "" {
		return "    (nothing)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// requireTools fails the test when a tool the examples use is missing under
// CI=true, and otherwise skips it, loudly: CI must never pass on a skip.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("the README examples need %s on PATH; missing: %s",
		strings.Join(tools, " and "), strings.Join(missing, ", "))
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skipf("\n%s\nSKIPPED: %s:\nthe README's examples were NOT checked.\n%s",
		strings.Repeat("!", 72), msg, strings.Repeat("!", 72))
}
