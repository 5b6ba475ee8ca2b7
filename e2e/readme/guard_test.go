package readme

import (
	"fmt"
	"regexp"
	"strings"
)

// The test runs a page's commands on the developer's machine, so it runs
// only what the contract allows in a console block: curl, optionally piped
// into jq, against the four well-known ports it rewrites. Anything else (a
// `docker-compose up`, a `go run` that registers in the user's Consul on
// 8500 and writes the user's SQLite file, a `make fuzz`) fails the example
// without running it: such a command belongs in a ```sh block.

// allowed are the programs a pipeline stage may start with.
var allowed = map[string]bool{"curl": true, "jq": true}

// loopback finds loopback addresses, with the port if one is given.
var loopback = regexp.MustCompile(`\b(?:localhost|127\.0\.0\.1)(?::(\d+))?\b`)

// CheckCommand returns an error when command is not of the contract's form,
// saying why.
func CheckCommand(command string) error {
	stages, err := pipeline(command)
	if err != nil {
		return err
	}
	for _, s := range stages {
		words := strings.Fields(s)
		if len(words) == 0 {
			return fmt.Errorf("empty pipeline stage")
		}
		if !allowed[words[0]] {
			return fmt.Errorf("%q is not curl or jq: a console block runs only curl (| jq) against the app; use a ```sh block", words[0])
		}
	}
	for _, m := range loopback.FindAllStringSubmatch(command, -1) {
		if !isWellKnown(m[1]) {
			return fmt.Errorf("%q is not one of the stack's ports (8081, 8082, 8083, 8500): it would reach whatever runs on this machine", m[0])
		}
	}
	return nil
}

func isWellKnown(port string) bool {
	for _, p := range wellKnown {
		if p == port {
			return true
		}
	}
	return false
}

// pipeline splits command at its unquoted "|" and refuses the shell syntax
// that would run anything else: lists (; & && ||), redirections, command
// substitution (also inside double quotes, where bash still expands it) and
// a line break that does not continue the command. A comment is dropped.
func pipeline(command string) ([]string, error) {
	var stages []string
	var cur strings.Builder
	var quote byte // ' or " while inside quotes
	for i := 0; i < len(command); i++ {
		c := command[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			}
		case c == '\\' && i+1 < len(command):
			cur.WriteByte(c)
			i++
			c = command[i]
		case c == '`' || (c == '$' && i+1 < len(command) && command[i+1] == '('):
			return nil, fmt.Errorf("command substitution is not allowed in a console block")
		case quote == '"':
			if c == '"' {
				quote = 0
			}
		case c == '#' && (i == 0 || command[i-1] == ' ' || command[i-1] == '\t'):
			i = len(command) // a comment, to the end: bash does not run it
			continue
		case c == '\'' || c == '"':
			quote = c
		case c == '|' && i+1 < len(command) && command[i+1] == '|':
			return nil, fmt.Errorf("%q is not allowed in a console block", "||")
		case c == '|':
			stages = append(stages, cur.String())
			cur.Reset()
			continue
		case strings.IndexByte(";&<>\n", c) >= 0:
			return nil, fmt.Errorf("%q is not allowed in a console block: one curl (| jq) per command", c)
		}
		cur.WriteByte(c)
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	return append(stages, cur.String()), nil
}
