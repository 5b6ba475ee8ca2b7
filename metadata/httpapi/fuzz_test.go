package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"

	"movieexample.com/internal/hostile"
	"movieexample.com/metadata"
	"movieexample.com/metadata/httpapi"
	"movieexample.com/pkg/ident"
)

// The fuzz targets feed the real handler requests as net/http parses them
// off the wire. Seeds are in testdata/fuzz; `make fuzz` runs each target for
// a while, `go test` runs the seeds.

func newHandler() http.Handler {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return httpapi.NewHTTPHandler(metadata.MakeEndpoints(metadata.NewService(metadata.NewMemory(metadata.Seed))), logger)
}

func FuzzGet(f *testing.F) {
	h := newHandler()
	f.Fuzz(func(t *testing.T, rawQuery string) {
		rec, q, ok := hostile.Get(t, h, "/metadata", rawQuery, map[string]func(string) bool{"id": ident.Valid})
		if !ok {
			return
		}
		id := q.Get("id")
		if rec.Code == http.StatusOK {
			var got metadata.Metadata
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.ID != id {
				t.Fatalf("GET id=%q answered %s", id, rec.Body)
			}
		}
	})
}

func FuzzPut(f *testing.F) {
	f.Fuzz(func(t *testing.T, rawQuery, contentType string, body []byte) {
		r, ok := hostile.Request(http.MethodPut, "/metadata", rawQuery, contentType, body)
		if !ok {
			return
		}
		// A fresh store each time: the fuzzer would otherwise fill one.
		h := newHandler()
		rec := hostile.Serve(t, h, r)
		hostile.Status(t, r, rec.Code, http.StatusOK, http.StatusBadRequest,
			http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
		if rec.Code != http.StatusOK {
			return
		}
		// Accepted: it must be valid, and be what a GET now answers.
		var put metadata.Metadata
		if err := json.Unmarshal(rec.Body.Bytes(), &put); err != nil {
			t.Fatalf("PUT answered %s: %v", rec.Body, err)
		}
		if err := put.Validate(); err != nil {
			t.Fatalf("PUT accepted %+v: %v", put, err)
		}
		get, _ := hostile.Request(http.MethodGet, "/metadata", "id="+url.QueryEscape(put.ID), "", nil)
		var got metadata.Metadata
		if rec := hostile.Serve(t, h, get); rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil || got != put {
			t.Fatalf("after PUT of %+v, GET answered %d %s", put, rec.Code, rec.Body)
		}
	})
}
