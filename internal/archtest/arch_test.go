// Package archtest holds the guard tests of movieapp's dependency rule:
// platform (pkg/...) <- domain (metadata, rating, movie) <- adapters
// (<svc>/httpapi, <svc>/sqlstore) <- main (<svc>/cmd). They read the real
// import graph with `go list`, so an arrow that runs back fails the suite.
package archtest

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "movieexample.com"

// services are the domain packages, one folder per service.
var services = []string{"metadata", "rating", "movie"}

// goList runs `go list` with args at the module's root and returns its
// output's lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Fields(string(out))
}

// imports returns the production (non-test) imports of every package of the
// module, by package.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	var pkg string
	for _, f := range goList(t, "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", "./...") {
		if p, ok := strings.CutSuffix(f, ":"); ok {
			pkg = p
			graph[pkg] = nil
			continue
		}
		graph[pkg] = append(graph[pkg], f)
	}
	return graph
}

// layer names the layer of a package of the module: "pkg", "domain",
// "adapter" or "main"; "" for the harnesses and test support (bench,
// cmd/chaos, internal, e2e), which may use any layer.
func layer(pkg string) string {
	rel := strings.TrimPrefix(pkg, module+"/")
	first, rest, _ := strings.Cut(rel, "/")
	switch {
	case first == "pkg":
		return "pkg"
	case !slices.Contains(services, first):
		return ""
	case rest == "":
		return "domain"
	case rest == "cmd":
		return "main"
	}
	return "adapter"
}

// TestArrowsPointOneWay checks that no production package imports one of a
// layer to its right: pkg imports no service package, a domain package no
// adapter or main, an adapter no main.
func TestArrowsPointOneWay(t *testing.T) {
	rank := map[string]int{"pkg": 0, "domain": 1, "adapter": 2, "main": 3}
	for pkg, deps := range imports(t) {
		from := layer(pkg)
		if from == "" {
			continue
		}
		for _, dep := range deps {
			if !strings.HasPrefix(dep, module+"/") {
				continue
			}
			if to := layer(dep); to == "" || rank[to] > rank[from] {
				t.Errorf("%s (%s) imports %s (%s): arrows point from main to adapters to domain to pkg, never back", pkg, from, dep, cmp(to))
			}
		}
	}
}

func cmp(layer string) string {
	if layer == "" {
		return "harness or test support"
	}
	return layer
}

// TestConsulStaysInDiscovery checks that pkg/discovery is everything
// movieapp does with Consul: no other package of the services imports
// consul/api (the harnesses and test support may).
func TestConsulStaysInDiscovery(t *testing.T) {
	for pkg, deps := range imports(t) {
		if layer(pkg) == "" || pkg == module+"/pkg/discovery" {
			continue
		}
		for _, dep := range deps {
			if strings.HasPrefix(dep, "github.com/hashicorp/consul") {
				t.Errorf("%s imports %s: only pkg/discovery talks to Consul", pkg, dep)
			}
		}
	}
}

// TestDomainPackagesStayPure checks that importing a domain type (as a
// caller of the service does) links no transport, registry, metrics,
// tracing or store: the domain packages' whole dependency trees hold none of them.
func TestDomainPackagesStayPure(t *testing.T) {
	banned := []string{"github.com/hashicorp/consul", "github.com/prometheus/", "modernc.org/sqlite",
		"github.com/jackc/pgx", "database/sql", "net/http", "go.opentelemetry.io/"}
	for _, svc := range services {
		for _, dep := range goList(t, "-deps", "./"+svc) {
			for _, b := range banned {
				if strings.HasPrefix(dep, b) {
					t.Errorf("domain package %s depends on %s", svc, dep)
				}
			}
		}
	}
}

// TestMovieLinksNoStore checks the movie binary, a gateway that opens no
// database: no SQL driver; and no test support, and no gRPC, in any binary.
func TestMovieLinksNoStore(t *testing.T) {
	for _, svc := range services {
		for _, dep := range goList(t, "-deps", "./"+svc+"/cmd") {
			if dep == "testing" {
				t.Errorf("the %s binary links the testing package", svc)
			}
			if svc == "movie" && (strings.Contains(dep, "sqlite") || strings.Contains(dep, "jackc/pgx")) {
				t.Errorf("the movie binary links %s", dep)
			}
			// The SDK's OTLP exporters link gRPC, 8.5 MB of each binary
			// that would take the images over their bound (pkg/tracing's
			// exporter is why there is none).
			if strings.HasPrefix(dep, "google.golang.org/grpc") {
				t.Errorf("the %s binary links %s", svc, dep)
			}
		}
	}
}

// TestTracingSDKStaysInTracing checks that pkg/tracing is the one package
// that sets tracing up: the others (the gateway's attempt spans, the
// clients' traceparent, the logs' trace IDs) use OpenTelemetry's API only,
// which is a no-op until a provider is given to them.
func TestTracingSDKStaysInTracing(t *testing.T) {
	sdk := []string{"go.opentelemetry.io/otel/sdk", "go.opentelemetry.io/otel/exporters", "go.opentelemetry.io/contrib",
		"go.opentelemetry.io/proto"}
	for pkg, deps := range imports(t) {
		if layer(pkg) == "" || pkg == module+"/pkg/tracing" {
			continue
		}
		for _, dep := range deps {
			for _, b := range sdk {
				if strings.HasPrefix(dep, b) {
					t.Errorf("%s imports %s: only pkg/tracing sets tracing up", pkg, dep)
				}
			}
		}
	}
}
