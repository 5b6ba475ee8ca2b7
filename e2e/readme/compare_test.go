package readme

import (
	"fmt"
	"regexp"
	"strings"
)

// The volatile parts of an answer, which differ on every run and so are
// replaced by placeholders in both the expected and the actual output.
var (
	uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	// An IPv4 address with an optional port: instance addresses in Consul's
	// answers and in error messages depend on the machine and the run.
	addrRE = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b`)
	// The request ID is whatever the service generated, UUID or not.
	requestIDRE = regexp.MustCompile(`(?i)^(x-request-id:)[ \t]*.*$`)
	dateRE      = regexp.MustCompile(`(?i)^date:`)
)

// Verdict is the outcome of comparing one example's output.
type Verdict struct {
	OK        bool
	Reason    string // why it does not match; "" when OK
	Want, Got string // both normalised, for the report
}

// Compare compares an example's expected output with what its command
// printed. With headers (curl -i), want holds the status line, any subset of
// the response headers in any order, a blank line and the body; otherwise
// the whole output must match. Volatile parts are normalised in both, and
// trailing whitespace is ignored.
func Compare(want, got string, headers bool) Verdict {
	if !headers {
		w, g := normalise(want), normalise(got)
		if w != g {
			return Verdict{Reason: "output differs", Want: w, Got: g}
		}
		return Verdict{OK: true, Want: w, Got: g}
	}
	wantHead, wantBody := splitResponse(want)
	gotHead, gotBody := splitResponse(got)
	v := Verdict{
		Want: joinResponse(wantHead, wantBody),
		Got:  joinResponse(gotHead, gotBody),
	}
	var why []string
	switch {
	case len(wantHead) == 0:
		why = append(why, "no status line expected")
	case len(gotHead) == 0 || gotHead[0] != wantHead[0]:
		why = append(why, fmt.Sprintf("status line: want %q", wantHead[0]))
	}
	if len(wantHead) > 0 {
		for _, h := range wantHead[1:] {
			if !hasHeader(gotHead, h) {
				why = append(why, fmt.Sprintf("header %q not in the response", h))
			}
		}
	}
	if wantBody != gotBody {
		hint := ""
		if !strings.Contains(strings.ReplaceAll(want, "\r", ""), "\n\n") {
			hint = " (the expected output has no blank line between the headers and the body)"
		}
		why = append(why, "body differs"+hint)
	}
	v.OK, v.Reason = len(why) == 0, strings.Join(why, "; ")
	return v
}

// splitResponse splits curl -i output at the first blank line into the
// status and header lines, normalised, without Date, and the normalised body.
func splitResponse(s string) (head []string, body string) {
	lines := strings.Split(strings.ReplaceAll(s, "\r", ""), "\n")
	i := 0
	for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
		l := strings.TrimRight(lines[i], " \t")
		if dateRE.MatchString(l) {
			continue
		}
		l = requestIDRE.ReplaceAllString(l, "$1 <id>")
		head = append(head, normaliseLine(l))
	}
	if i < len(lines) {
		body = normalise(strings.Join(lines[i+1:], "\n"))
	}
	return head, body
}

func joinResponse(head []string, body string) string {
	return strings.Join(head, "\n") + "\n\n" + body
}

// hasHeader reports whether head holds the header line h: the name in any
// case (HTTP header names are case-insensitive), the value exactly.
func hasHeader(head []string, h string) bool {
	name, value, ok := strings.Cut(h, ":")
	if !ok {
		return false
	}
	for _, g := range head {
		n, v, ok := strings.Cut(g, ":")
		if ok && strings.EqualFold(n, name) && strings.TrimSpace(v) == strings.TrimSpace(value) {
			return true
		}
	}
	return false
}

// normalise normalises every line of s, drops trailing whitespace and
// trailing blank lines, and carriage returns (curl prints HTTP's CRLFs).
func normalise(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r", ""), "\n")
	for i, l := range lines {
		lines[i] = normaliseLine(strings.TrimRight(l, " \t"))
	}
	return strings.Join(trimTrailingBlank(lines), "\n")
}

func normaliseLine(l string) string {
	l = uuidRE.ReplaceAllString(l, "<uuid>")
	return addrRE.ReplaceAllString(l, "<addr>")
}

// showsHeaders reports whether command runs curl with -i/--include (or
// -I/--head), whose output starts with the status line and headers. Short
// options may be clustered, as in -si; only curl's own words count, so a
// `| grep -i` after it does not.
func showsHeaders(command string) bool {
	inCurl := false
	for _, f := range strings.Fields(command) {
		switch {
		case f == "curl" || strings.HasSuffix(f, "/curl"):
			inCurl = true
		case f == "|" || f == ";" || f == "&&" || f == "||":
			inCurl = false
		case !inCurl:
		case f == "--include", f == "--head":
			return true
		case len(f) > 1 && f[0] == '-' && f[1] != '-' && isLetters(f[1:]) && strings.ContainsAny(f[1:], "iI"):
			return true
		}
	}
	return false
}

func isLetters(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}
