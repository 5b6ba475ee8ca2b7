//go:build tools

// Package tools pins the Consul agent that movieapp's tests and `make consul`
// run. It lives in its own module so Consul's large dependency tree stays out
// of the application's go.mod.
package tools

import _ "github.com/hashicorp/consul"
