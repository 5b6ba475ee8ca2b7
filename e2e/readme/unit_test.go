package readme

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fence3 keeps the fake pages below readable: a Go raw string cannot hold a
// backtick.
const fence3 = "```"

// writePage writes a fake page into a temporary directory, so the parser is
// tested the way TestREADME uses it, from a file.
func writePage(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "~~~", fence3)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		page string
		want []Example
	}{{
		name: "two commands in a block, blank separator dropped",
		page: "# t\n~~~console\n$ curl a\n{\"a\":1}\n\n$ curl b\nline1\nline2\n~~~\n",
		want: []Example{
			{Line: 3, Command: "curl a", Want: `{"a":1}`},
			{Line: 6, Command: "curl b", Want: "line1\nline2"},
		},
	}, {
		name: "continuation lines belong to the command",
		page: "~~~console\n$ curl -X PUT \\\n    -d x \\\n    localhost:8081\nok\n~~~\n",
		want: []Example{{Line: 2, Command: "curl -X PUT \\\n    -d x \\\n    localhost:8081", Want: "ok"}},
	}, {
		name: "empty output",
		page: "~~~console\n$ curl a\n$ curl b\n\n~~~\n",
		want: []Example{{Line: 2, Command: "curl a"}, {Line: 3, Command: "curl b"}},
	}, {
		name: "sh, text and console shown inside a longer fence are not run",
		page: "~~~sh\n$ make run\n~~~\n~~~text\n$ curl x\n~~~\n````markdown\n~~~console\n$ rm -rf /\n~~~\n````\n~~~console\n$ curl c\nc\n~~~\n",
		want: []Example{{Line: 13, Command: "curl c", Want: "c"}},
	}, {
		name: "console blocks across the page run in page order",
		page: "~~~console\n$ curl 1\n~~~\ntext\n~~~ console\n$ curl 2\n~~~\n",
		want: []Example{{Line: 2, Command: "curl 1"}, {Line: 6, Command: "curl 2"}},
	}, {
		name: "a fence in a list item: its indent is not part of the lines",
		page: "- movie:\n\n  ~~~console\n  $ curl a \\\n      -s\n  {\"a\":1}\n  ~~~\n",
		want: []Example{{Line: 4, Command: "curl a \\\n    -s", Want: `{"a":1}`}},
	}, {
		name: "no console block",
		page: "# t\n~~~sh\n$ curl a\n~~~\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile(writePage(t, tt.page), "README.md")
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				tt.want[i].File = "README.md"
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestREADMEWithoutExamplesFails(t *testing.T) {
	for _, tt := range []struct {
		name, page string
		ok         bool
	}{
		{"only sh blocks", "# t\n~~~sh\n$ make run\n~~~\n", false},
		{"one console example", "~~~console\n$ curl localhost:8083/ready\n~~~\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Dir(writePage(t, tt.page))
			_, err := readmeExamples(root)
			if (err == nil) != tt.ok {
				t.Errorf("readmeExamples error = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, page, want string }{
		{"output before the first command", "~~~console\nstray\n$ curl a\n~~~\n", "README.md:2: output before"},
		{"block never closed", "x\n~~~console\n$ curl a\n", "README.md:2: console block is never closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile(writePage(t, tt.page), "README.md")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	const okHead = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n" +
		"X-Request-Id: 0f2c\r\nContent-Length: 9\r\n\r\n"
	tests := []struct {
		name      string
		want, got string
		headers   bool
		ok        bool
	}{
		{"exact body", `{"a":1}`, "{\"a\":1}\n", false, true},
		{"body drift", `{"a":1}`, "{\"a\":2}\n", false, false},
		{"trailing whitespace ignored", "a  \nb", "a\nb\t\n\n", false, true},
		{"leading whitespace counts", "a", " a", false, false},
		{"empty output matches empty", "", "", false, true},
		{"empty expected, something printed", "", "x\n", false, false},
		{"uuid normalised", "rating-545dc191-28c6-49cf-a198-cfc4b26f2c00 x",
			"rating-26b1c923-74e7-4ef0-8f08-0e76b70ac4e2 x", false, true},
		{"uuid in the wrong place", "rating-545dc191-28c6-49cf-a198-cfc4b26f2c00", "metadata-26b1c923-74e7-4ef0-8f08-0e76b70ac4e2", false, false},
		{"address and port normalised", "id 172.25.0.7:8082", "id 127.0.0.1:41234", false, true},
		{"address without port normalised", `{"Address":"172.25.0.7"}`, `{"Address":"127.0.0.1"}`, false, true},
		{"a float is no address", `{"rating":4.5}`, `{"rating":4.6}`, false, false},
		{"-i subset, any order, Date dropped, request id normalised",
			"HTTP/1.1 200 OK\nX-Request-Id: 14ef303c-562f-4888-8d20-9e34f20db526\ncontent-type: application/json\n\n{\"a\":1}",
			okHead + "{\"a\":1}\n", true, true},
		{"-i status only", "HTTP/1.1 200 OK\n\n{\"a\":1}", okHead + "{\"a\":1}\n", true, true},
		{"-i header missing", "HTTP/1.1 200 OK\nAllow: GET\n\n{\"a\":1}", okHead + "{\"a\":1}\n", true, false},
		{"-i header value differs", "HTTP/1.1 200 OK\nContent-Type: text/plain\n\n{\"a\":1}", okHead + "{\"a\":1}\n", true, false},
		{"-i status differs", "HTTP/1.1 404 Not Found\n\n{\"a\":1}", okHead + "{\"a\":1}\n", true, false},
		{"-i body differs", "HTTP/1.1 200 OK\n\n{\"a\":2}", okHead + "{\"a\":1}\n", true, false},
		{"-i body missing its blank line", "HTTP/1.1 200 OK\n{\"a\":1}", okHead + "{\"a\":1}\n", true, false},
		{"-i nothing printed", "HTTP/1.1 200 OK\n\n{\"a\":1}", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Compare(tt.want, tt.got, tt.headers)
			if v.OK != tt.ok {
				t.Errorf("Compare ok = %v (%s), want %v\nwant:\n%s\ngot:\n%s", v.OK, v.Reason, tt.ok, v.Want, v.Got)
			}
			if !v.OK && v.Reason == "" {
				t.Error("a mismatch without a reason")
			}
		})
	}
}

func TestNormalise(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rating-545dc191-28c6-49cf-a198-cfc4b26f2c00 172.25.0.7:8082", "rating-<uuid> <addr>"},
		{`dial tcp 127.0.0.1:8081: connection refused`, `dial tcp <addr>: connection refused`},
		{"a \r\nb\r\n\r\n", "a\nb"},
	}
	for _, tt := range tests {
		if got := normalise(tt.in); got != tt.want {
			t.Errorf("normalise(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	head, body := splitResponse("HTTP/1.1 200 OK\r\nDate: x\r\nx-request-id: abc\r\n\r\n{}\r\n")
	if want := []string{"HTTP/1.1 200 OK", "x-request-id: <id>"}; !reflect.DeepEqual(head, want) || body != "{}" {
		t.Errorf("splitResponse = %q, %q; want %q, %q", head, body, want, "{}")
	}
}

func TestShowsHeaders(t *testing.T) {
	tests := []struct {
		cmd  string
		want bool
	}{
		{"curl -i 'localhost:8083/movie?id=1'", true},
		{"curl -si localhost:8083", true},
		{"curl --include localhost:8083", true},
		{"curl -I localhost:8083", true},
		{"curl -s localhost:8083 | jq .", false},
		{"curl -X PUT -H 'Content-Type: application/json' localhost:8081/metadata -d '{}'", false},
		{"curl -s localhost:8500/v1/catalog/services | grep -i rating", false},
	}
	for _, tt := range tests {
		if got := showsHeaders(tt.cmd); got != tt.want {
			t.Errorf("showsHeaders(%q) = %v, want %v", tt.cmd, got, tt.want)
		}
	}
}

func TestStackPorts(t *testing.T) {
	s, err := NewStack(map[string]string{"metadata": "127.0.0.1:41001", "movie": "127.0.0.1:41003", "consul": "127.0.0.1:41500"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := "curl localhost:8083/movie && curl http://127.0.0.1:8081/x localhost:8500 localhost:80830 example.com:8083 localhost:8082"
	want := "curl localhost:41003/movie && curl http://127.0.0.1:41001/x localhost:41500 localhost:80830 example.com:8083 localhost:8082"
	if got := s.Rewrite(cmd); got != want {
		t.Errorf("Rewrite:\ngot  %s\nwant %s", got, want)
	}
	out := `metadata-x 127.0.0.1:41001 "Port":41001 141001 41003`
	if got, want := s.MapBack(out), `metadata-x 127.0.0.1:8081 "Port":8081 141001 8083`; got != want {
		t.Errorf("MapBack:\ngot  %s\nwant %s", got, want)
	}
}

// TestCheck runs a fake page through the whole pipeline (parse, rewrite,
// bash, map back, compare) against a fake movie, and shows that it passes
// what matches and reports each drift with its line.
func TestCheck(t *testing.T) {
	requireTools(t, "curl", "jq")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "9b2e4d1c-0000-4000-8000-000000000001")
		if r.URL.Path == "/text" {
			w.Write([]byte("not json\n"))
			return
		}
		w.Write([]byte(`{"id":"` + r.URL.Query().Get("id") + `","addr":"` + r.Host + `"}` + "\n"))
	}))
	defer srv.Close()
	stack, err := NewStack(map[string]string{"movie": srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	page := "~~~console\n" +
		"$ curl 'localhost:8083/m?id=1'\n{\"id\":\"1\",\"addr\":\"localhost:8083\"}\n" + // line 2: passes, port mapped back
		"$ curl -s 'localhost:8083/m?id=2' | jq -r .id\n3\n" + // line 4: drift
		"$ curl -i 'localhost:8083/m?id=4'\nHTTP/1.1 200 OK\nX-Request-Id: x\n\n{\"id\":\"4\",\"addr\":\"localhost:8083\"}\n" + // line 6: passes
		"$ curl -s localhost:8083/text | jq .\n" + // line 11: jq fails, empty output would match
		"$ touch ran\n" + // line 12: not a contract command, must not run
		"~~~\n"
	examples, err := ParseFile(writePage(t, page), "README.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	failures, refused := Check(context.Background(), stack, dir, examples)
	if refused != 1 {
		t.Errorf("refused = %d, want 1 (line 12)", refused)
	}
	if len(failures) != 3 {
		t.Fatalf("got %d failures, want 3 (lines 4, 11 and 12):\n%s", len(failures), strings.Join(failures, "\n\n"))
	}
	for i, prefix := range []string{"README.md:4: $ curl -s", "README.md:11: $ curl -s localhost:8083/text", "README.md:12: $ touch ran\nNOT RUN"} {
		if !strings.HasPrefix(failures[i], prefix) {
			t.Errorf("failure %d:\n%s\nwant it to start with %q", i, failures[i], prefix)
		}
	}
	if !strings.Contains(failures[1], "command failed") {
		t.Errorf("a failed command must say so:\n%s", failures[1])
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("a command outside the contract was run")
	}
}

func TestCheckCommand(t *testing.T) {
	allowed := []string{
		"curl -i 'localhost:8083/movie?id=1'",
		"curl -s 'localhost:8500/v1/health/service/rating?passing' | jq -r '.[].Service | \"\\(.ID) \\(.Address):\\(.Port)\"'",
		"curl -X PUT -H 'Content-Type: application/json' localhost:8081/metadata \\\n    -d '{\"id\":\"6\",\"title\":\"Ikiru; & > | $(x)\"}'",
		"curl 'localhost:8083/movie?id=5'          # no ratings yet; \"rating\" is left out",
		"curl http://127.0.0.1:8082/rating?id=1\\&type=movie",
	}
	for _, c := range allowed {
		if err := CheckCommand(c); err != nil {
			t.Errorf("CheckCommand(%q) = %v, want nil", c, err)
		}
	}
	refused := []string{
		"docker-compose up -d --scale rating=3",
		"go run ./rating/cmd -host 127.0.0.1 -port 8092",
		"make fuzz",
		"CONSUL_HTTP_TOKEN=x curl localhost:8500/v1/agent/self",
		"curl localhost:8083/ready; rm -rf x",
		"curl localhost:8083/ready && true",
		"curl localhost:8083/ready || true",
		"curl localhost:8083/ready &",
		"curl localhost:8083/ready > out",
		"curl localhost:8083/ready | sh",
		"curl $(echo localhost:8083)",
		"curl \"$(echo localhost:8083)\"",
		"curl `echo localhost:8083`",
		"curl localhost:9090/metrics",
		"curl localhost/ready",
		"curl localhost:8083/ready\ncurl localhost:8083/ready",
		"curl 'localhost:8083/ready",
	}
	for _, c := range refused {
		if err := CheckCommand(c); err == nil {
			t.Errorf("CheckCommand(%q) = nil, want an error", c)
		}
	}
}
