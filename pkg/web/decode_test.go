package web_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/web"
)

type body struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Tags   []string `json:"tags"`
	Nested struct {
		Name string `json:"name"`
	} `json:"nested"`
}

// unsized hides a body's length, as a chunked request does.
type unsized struct{ io.Reader }

func TestDecodeJSON(t *testing.T) {
	big := `{"id":"1","title":"` + strings.Repeat("x", web.MaxBodyBytes) + `"}`
	tests := []struct {
		name        string
		contentType string
		body        io.Reader
		want        error  // nil, errs.ErrInvalid, ErrBodyTooLarge or ErrUnsupportedMediaType
		wantInErr   string // part of the message the client sees
	}{
		{name: "object", contentType: "application/json", body: strings.NewReader(`{"id":"1","title":"t"}`)},
		{name: "no content type", body: strings.NewReader(`{"id":"1"}`)},
		{name: "charset utf-8", contentType: "application/json; charset=UTF-8", body: strings.NewReader(`{"id":"1"}`)},
		{name: "nested and arrays", body: strings.NewReader(`{"tags":["a","b"],"nested":{"name":"n"}}`)},
		{name: "same key in different objects", body: strings.NewReader(`{"id":"1","nested":{"name":"n"},"tags":[]}`)},
		{name: "text/plain", contentType: "text/plain", body: strings.NewReader(`{}`), want: web.ErrUnsupportedMediaType},
		{name: "form", contentType: "application/x-www-form-urlencoded", body: strings.NewReader(`id=1`), want: web.ErrUnsupportedMediaType},
		{name: "json prefix is not json", contentType: "application/jsonp", body: strings.NewReader(`{}`), want: web.ErrUnsupportedMediaType},
		{name: "other charset", contentType: "application/json; charset=latin1", body: strings.NewReader(`{}`), want: web.ErrUnsupportedMediaType},
		{name: "malformed content type", contentType: "application/json; ===", body: strings.NewReader(`{}`), want: web.ErrUnsupportedMediaType},
		{name: "too large", body: strings.NewReader(big), want: web.ErrBodyTooLarge},
		{name: "too large without length", body: unsized{strings.NewReader(big)}, want: web.ErrBodyTooLarge},
		{name: "too large and malformed early", body: strings.NewReader(`{"id":` + big), want: web.ErrBodyTooLarge},
		{name: "exactly the limit", body: strings.NewReader(`{"id":"1","title":"` + strings.Repeat("x", web.MaxBodyBytes-22) + `"}`)},
		{name: "empty", body: strings.NewReader(``), want: errs.ErrInvalid, wantInErr: "empty body"},
		{name: "malformed", body: strings.NewReader(`{"id":`), want: errs.ErrInvalid, wantInErr: "malformed"},
		{name: "unclosed", body: strings.NewReader(`{"id":"1"`), want: errs.ErrInvalid, wantInErr: "malformed"},
		{name: "unclosed array", body: strings.NewReader(`{"tags":["a"`), want: errs.ErrInvalid, wantInErr: "malformed"},
		{name: "not an object", body: strings.NewReader(`["id"]`), want: errs.ErrInvalid, wantInErr: "must be an object"},
		{name: "wrong type", body: strings.NewReader(`{"id":1}`), want: errs.ErrInvalid, wantInErr: `field "id"`},
		{name: "unknown field", body: strings.NewReader(`{"id":"1","rating":5}`), want: errs.ErrInvalid, wantInErr: `unknown field "rating"`},
		{name: "unknown nested field", body: strings.NewReader(`{"nested":{"x":1}}`), want: errs.ErrInvalid, wantInErr: `unknown field "x"`},
		{name: "duplicate key", body: strings.NewReader(`{"id":"1","id":"2"}`), want: errs.ErrInvalid, wantInErr: `duplicate key "id"`},
		{name: "duplicate key, other case", body: strings.NewReader(`{"title":"a","TITLE":"b"}`), want: errs.ErrInvalid, wantInErr: "duplicate key"},
		{name: "duplicate key, escaped", body: strings.NewReader(`{"id":"1","\u0069d":"2"}`), want: errs.ErrInvalid, wantInErr: "duplicate key"},
		// U+017F LATIN SMALL LETTER LONG S folds to s: encoding/json
		// matches "tagſ" to the field "tags", so it is a duplicate too.
		{name: "duplicate key, unicode fold", body: strings.NewReader(`{"tags":["a"],"tag\u017f":["b"]}`), want: errs.ErrInvalid, wantInErr: "duplicate key"},
		{name: "unicode fold alone is the field", body: strings.NewReader(`{"tag\u017f":["b"]}`)},
		{name: "duplicate nested key", body: strings.NewReader(`{"nested":{"name":"a","name":"b"}}`), want: errs.ErrInvalid, wantInErr: "duplicate key"},
		{name: "duplicate unknown keys", body: strings.NewReader(`{"x":1,"x":2}`), want: errs.ErrInvalid, wantInErr: "duplicate key"},
		{name: "duplicate in array of objects", body: strings.NewReader(`{"tags":[],"nested":{},"x":[{"a":1,"a":2}]}`), want: errs.ErrInvalid, wantInErr: "duplicate key"},
		{name: "trailing value", body: strings.NewReader(`{"id":"1"} {}`), want: errs.ErrInvalid, wantInErr: "more than one JSON value"},
		{name: "trailing garbage", body: strings.NewReader(`{"id":"1"} x`), want: errs.ErrInvalid, wantInErr: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, "/x", tt.body)
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			var v body
			err := web.DecodeJSON(r, &v)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("DecodeJSON = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("DecodeJSON = %q, want it to contain %q", err, tt.wantInErr)
			}
		})
	}
}

func TestQuery(t *testing.T) {
	tests := []struct {
		query     string
		names     []string
		want      map[string]string
		wantInErr string
	}{
		{query: "id=1&type=movie", names: []string{"id", "type"}, want: map[string]string{"id": "1", "type": "movie"}},
		{query: "id=a%2Db", names: []string{"id"}, want: map[string]string{"id": "a-b"}},
		{query: "", names: nil, want: map[string]string{}},
		{query: "id=1&&", names: []string{"id"}, want: map[string]string{"id": "1"}},
		{query: "", names: []string{"id"}, wantInErr: "exactly one id"},
		{query: "id=1&id=2", names: []string{"id"}, wantInErr: "exactly one id"},
		{query: "id=1&ID=2", names: []string{"id"}, wantInErr: `unknown query parameter "ID"`},
		{query: "id=1&debug=1", names: []string{"id"}, wantInErr: `unknown query parameter "debug"`},
		{query: "id=1", names: nil, wantInErr: "unknown query parameter"},
		{query: "=1", names: []string{"id"}, wantInErr: "unknown query parameter"},
		// r.URL.Query would drop the bad pair and read id=1.
		{query: "id=1&id=%zz", names: []string{"id"}, wantInErr: "malformed query string"},
		{query: "id=1;id=2", names: []string{"id"}, wantInErr: "malformed query string"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			r.URL.RawQuery = tt.query
			q, err := web.Query(r, tt.names...)
			if tt.wantInErr != "" {
				if !errors.Is(err, errs.ErrInvalid) || !strings.Contains(err.Error(), tt.wantInErr) {
					t.Fatalf("Query(%q) = %v, want an invalid-argument error containing %q", tt.query, err, tt.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Query(%q) = %v", tt.query, err)
			}
			if len(q) != len(tt.want) {
				t.Errorf("Query(%q) = %v, want %v", tt.query, q, tt.want)
			}
			for k, v := range tt.want {
				if got := q.Get(k); got != v {
					t.Errorf("Query(%q)[%s] = %q, want %q", tt.query, k, got, v)
				}
			}
		})
	}
}
