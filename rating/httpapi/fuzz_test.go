package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	"movieexample.com/internal/hostile"
	"movieexample.com/pkg/ident"
	"movieexample.com/rating"
	"movieexample.com/rating/httpapi"
)

// The fuzz targets feed the real handler requests as net/http parses them
// off the wire. Seeds are in testdata/fuzz; `make fuzz` runs each target for
// a while, `go test` runs the seeds.

func newHandler() http.Handler {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return httpapi.NewHTTPHandler(rating.MakeEndpoints(rating.NewService(rating.NewMemory(rating.Seed))), logger)
}

// keyRules are what a query naming a rated record must satisfy.
var keyRules = map[string]func(string) bool{
	"id":   ident.Valid,
	"type": func(s string) bool { return s == string(rating.RecordTypeMovie) },
}

// putRules adds what a rating must satisfy.
var putRules = map[string]func(string) bool{
	"id":     keyRules["id"],
	"type":   keyRules["type"],
	"userId": ident.Valid,
	"value": func(s string) bool {
		v, err := strconv.Atoi(s)
		return err == nil && v >= rating.MinValue && v <= rating.MaxValue
	},
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
		rec, q, ok := hostile.Get(t, h, "/rating", rawQuery, keyRules)
		if !ok {
			return
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
		q := hostile.Accepted(t, r, rec.Code, putRules)
		checkAggregate(t, rec.Body.Bytes(), q.Get("id"))
	})
}
