package rating_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"movieexample.com/internal/hostile"
	"movieexample.com/pkg/ident"
	"movieexample.com/rating"
)

// The fuzz targets feed the real handler requests as net/http parses them
// off the wire. Seeds are in testdata/fuzz; `make fuzz` runs each target for
// a while, `go test` runs the seeds.

func newHandler() http.Handler {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return rating.NewHTTPHandler(rating.MakeEndpoints(rating.NewService(rating.NewMemory(rating.Seed))), logger)
}

// validKey reports whether q names exactly a valid movie ID and nothing else
// than want.
func validKey(q url.Values, want int) bool {
	return len(q) == want && len(q["id"]) == 1 && len(q["type"]) == 1 &&
		q.Get("type") == string(rating.RecordTypeMovie) && ident.Valid(q.Get("id"))
}

func checkAggregate(t *testing.T, body []byte, id string) rating.Aggregate {
	t.Helper()
	var a rating.Aggregate
	if err := json.Unmarshal(body, &a); err != nil || a.ID != id || a.Type != rating.RecordTypeMovie ||
		a.Count < 1 || a.Average < rating.MinValue || a.Average > rating.MaxValue {
		t.Fatalf("answer for id %q is not a valid aggregate: %s", id, body)
	}
	return a
}

func FuzzGet(f *testing.F) {
	h := newHandler()
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r, ok := hostile.Request(http.MethodGet, "/rating", rawQuery, "", nil)
		if !ok {
			return
		}
		rec := hostile.Serve(t, h, r)
		hostile.Status(t, r, rec.Code, http.StatusOK, http.StatusBadRequest, http.StatusNotFound)
		if rec.Code == http.StatusBadRequest {
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil || !validKey(q, 2) {
			t.Fatalf("query %q answered %d, want 400", r.URL.RawQuery, rec.Code)
		}
		if rec.Code == http.StatusOK {
			checkAggregate(t, rec.Body.Bytes(), q.Get("id"))
		}
	})
}

func FuzzPut(f *testing.F) {
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r, ok := hostile.Request(http.MethodPut, "/rating", rawQuery, "", nil)
		if !ok {
			return
		}
		// A fresh store each time: the fuzzer would otherwise fill one.
		rec := hostile.Serve(t, newHandler(), r)
		hostile.Status(t, r, rec.Code, http.StatusOK, http.StatusBadRequest)
		if rec.Code != http.StatusOK {
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil || !validKey(q, 4) || len(q["userId"]) != 1 || !ident.Valid(q.Get("userId")) {
			t.Fatalf("query %q answered 200, want 400", r.URL.RawQuery)
		}
		if v, err := strconv.Atoi(q.Get("value")); err != nil || v < rating.MinValue || v > rating.MaxValue {
			t.Fatalf("query %q with value %q answered 200, want 400", r.URL.RawQuery, q.Get("value"))
		}
		checkAggregate(t, rec.Body.Bytes(), q.Get("id"))
	})
}
