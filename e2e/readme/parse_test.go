package readme

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Example is one executed example of a console block: a command and the
// output the page says it prints.
type Example struct {
	File    string // the page, as reported
	Line    int    // 1-based line of the command's "$ " line
	Command string // bash, continuation lines kept with their "\" and newline
	Want    string // expected output, trailing blank lines removed
}

// fence matches a Markdown code fence line: an indent, three or more
// backticks or tildes, then an info string whose first word is the block's
// language. Any indent is accepted, not CommonMark's three spaces, because a
// fence in a list item is indented by the item's own indent too.
var fence = regexp.MustCompile("^( *)(`{3,}|~{3,})[ \t]*([^ \t`]*)")

// ParseFile reads the console-block examples of the Markdown page at path,
// reported as name.
func ParseFile(path, name string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, name)
}

// Parse returns the examples of every ```console block in r, in order. Every
// fence is tracked, not only console ones, so a "```console" line shown
// inside another block (as this contract's own docs might) is not run. It
// returns an error for a console block that is never closed or that has
// output before its first command: both mean the page does not follow the
// contract, and guessing would run or skip the wrong thing.
func Parse(r io.Reader, name string) ([]Example, error) {
	var (
		examples []Example
		open     string // the opening fence's run of backticks or tildes; "" outside a block
		indent   int    // the opening fence's indent, removed from the block's lines
		console  bool   // the open block is a console block
		block    []numbered
		openLine int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		m := fence.FindStringSubmatch(line)
		switch {
		case open == "" && m != nil:
			indent, open, console, block, openLine = len(m[1]), m[2], m[3] == "console", nil, n
		case open != "" && closes(line, open):
			if console {
				ex, err := parseBlock(name, block)
				if err != nil {
					return nil, err
				}
				examples = append(examples, ex...)
			}
			open = ""
		case open != "" && console:
			block = append(block, numbered{n, unindent(line, indent)})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if open != "" && console {
		return nil, fmt.Errorf("%s:%d: console block is never closed", name, openLine)
	}
	return examples, nil
}

type numbered struct {
	n    int
	text string
}

// closes reports whether line closes a block opened with the fence open: the
// same character, at least as many, and nothing after but spaces.
func closes(line, open string) bool {
	s := strings.TrimLeft(line, " ")
	return strings.HasPrefix(s, open) && strings.Trim(s, open[:1]+" \t") == ""
}

// unindent removes up to n leading spaces, as CommonMark does with the
// lines of a fenced block whose fence is indented by n.
func unindent(line string, n int) string {
	i := 0
	for i < n && i < len(line) && line[i] == ' ' {
		i++
	}
	return line[i:]
}

// parseBlock splits one console block into examples: a "$ " line starts a
// command, a command line ending in "\" continues on the next line, and the
// lines after the command up to the next "$ " line are its output.
func parseBlock(name string, lines []numbered) ([]Example, error) {
	var examples []Example
	var out []string
	flush := func() {
		if len(examples) > 0 {
			examples[len(examples)-1].Want = strings.Join(trimTrailingBlank(out), "\n")
		}
		out = nil
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l.text, "$ ") {
			if len(examples) == 0 && strings.TrimSpace(l.text) != "" {
				return nil, fmt.Errorf("%s:%d: output before the first \"$ \" command of a console block", name, l.n)
			}
			out = append(out, l.text)
			continue
		}
		flush()
		cmd := []string{strings.TrimPrefix(l.text, "$ ")}
		for strings.HasSuffix(cmd[len(cmd)-1], `\`) && i+1 < len(lines) {
			i++
			cmd = append(cmd, lines[i].text)
		}
		examples = append(examples, Example{File: name, Line: l.n, Command: strings.Join(cmd, "\n")})
	}
	flush()
	return examples, nil
}

// trimTrailingBlank drops the blank lines that separate one example from the
// next: they are layout, not output.
func trimTrailingBlank(lines []string) []string {
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
