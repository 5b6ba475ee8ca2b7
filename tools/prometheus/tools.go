//go:build tools

// Package tools pins the Prometheus server that movieapp's observability test
// and docker-compose run. It lives in its own module so Prometheus's
// dependency tree stays out of the application's go.mod.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
