package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/internal/hostile"
	"movieexample.com/metadata"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/web"
)

// answer is an upstream that always answers status with body.
func answer(status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})
}

// endless is an upstream whose 200 answer never ends.
var endless = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"id":"1","title":"`))
	chunk := []byte(strings.Repeat("x", 32<<10))
	for {
		if _, err := w.Write(chunk); err != nil {
			return // the gateway hung up, as it must
		}
	}
})

// oversized pads a valid answer past the cap on an upstream's answer with
// whitespace, which JSON allows: only the size is wrong.
func oversized(valid string) string {
	return valid + strings.Repeat(" ", web.MaxAnswerBytes)
}

// TestUntrustedUpstreams shows that movie answers a malformed, oversized or
// implausible upstream answer with a 502 when it comes from metadata, and
// with the metadata alone, marked partial, when it comes from rating.
func TestUntrustedUpstreams(t *testing.T) {
	goodMetadata := metadataHandler()
	goodRating := ratingHandler()
	const okMetadata = `{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"}`
	const okRating = `{"id":"1","type":"movie","rating":4.5,"count":2}`
	bad := []struct {
		name     string
		metadata http.Handler // the bad metadata answer
		rating   http.Handler // the bad rating answer
	}{
		{"malformed JSON", answer(200, `{"id":"1","title":`), answer(200, `{"rating":`)},
		{"not JSON", answer(200, `<html>oops</html>`), answer(200, `<html>oops</html>`)},
		{"empty body", answer(200, ``), answer(200, ``)},
		{"null", answer(200, `null`), answer(200, `null`)},
		{"wrong types", answer(200, `{"id":1,"title":["x"]}`), answer(200, `{"id":"1","rating":"5","count":"2"}`)},
		{"over the size cap", answer(200, oversized(okMetadata)), answer(200, oversized(okRating))},
		{"endless body", endless, endless},
		{"another movie", answer(200, `{"id":"2","title":"The Godfather"}`), answer(200, `{"id":"2","type":"movie","rating":5,"count":1}`)},
		{"implausible values", answer(200, `{"id":"1","title":"`+strings.Repeat("x", metadata.MaxTitleLen+1)+`"}`),
			answer(200, `{"id":"1","type":"movie","rating":7,"count":1}`)},
		{"invalid id", answer(200, `{"id":"../1","title":"x"}`), answer(200, `{"id":"1","type":"movie","rating":3,"count":0}`)},
		{"redirect", answer(302, ``), answer(302, ``)},
		{"unexpected 4xx", answer(418, `{"error":"teapot"}`), answer(418, `{"error":"teapot"}`)},
		{"2xx other than 200", answer(204, ``), answer(204, ``)},
	}
	for _, tt := range bad {
		t.Run("metadata/"+tt.name, func(t *testing.T) {
			h := newMovie(t, serve(t, "metadata", tt.metadata), serve(t, "rating", goodRating))
			r, _ := hostile.Request(http.MethodGet, "/movie", "id=1", "", nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			hostile.Shape(t, r, rec)
			if rec.Code != http.StatusBadGateway {
				t.Errorf("status = %d %s, want 502", rec.Code, rec.Body)
			}
		})
		t.Run("rating/"+tt.name, func(t *testing.T) {
			h := newMovie(t, serve(t, "metadata", goodMetadata), serve(t, "rating", tt.rating))
			r, _ := hostile.Request(http.MethodGet, "/movie", "id=1", "", nil)
			rec := hostile.Serve(t, h, r)
			var got struct {
				Metadata metadata.Metadata `json:"metadata"`
				Rating   *float64          `json:"rating"`
				Partial  []string          `json:"partial"`
			}
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil ||
				got.Metadata.ID != "1" || got.Rating != nil || len(got.Partial) != 1 || got.Partial[0] != "rating" {
				t.Errorf("answer = %d %s, want 200 with the metadata and \"partial\":[\"rating\"]", rec.Code, rec.Body)
			}
		})
	}
	// The same servers with good answers: the failures above are the
	// answers' doing, not the harness's.
	t.Run("good answers", func(t *testing.T) {
		md, rt := serve(t, "metadata", answer(200, okMetadata)), serve(t, "rating", answer(200, okRating))
		r, _ := hostile.Request(http.MethodGet, "/movie", "id=1", "", nil)
		rec := hostile.Serve(t, newMovie(t, md, rt), r)
		if want := `{"metadata":` + okMetadata + `,"rating":4.5}`; rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
			t.Errorf("answer = %d %s, want 200 %s", rec.Code, rec.Body, want)
		}
	})
}

// TestWrongInstance shows that movie trusts an answer only from the
// instance discovery named: another process at its address (a restarted
// host's port taken by another service, a foreign server) or one that does
// not say who it is gets no say, whatever it answers. A 404 from it is no
// "movie not found", and a valid-looking rating from it is no rating.
func TestWrongInstance(t *testing.T) {
	const (
		metadataID = "metadata/metadata-test"
		ratingID   = "rating/rating-test"
	)
	notFound := answer(404, `{"error":"not found"}`)
	goodRating := ratingHandler()
	impostors := []struct {
		name   string
		says   string // the identity the impostor answers with; "" for none
		answer http.Handler
	}{
		{"no identity, 404", "", notFound},
		{"no identity, good answer", "", goodRating},
		{"other service, 404", "someone/else", answer(404, `{"error":"no route for /metadata"}`)},
		{"same service, other instance", "", nil}, // filled in per service below
	}
	for _, tt := range impostors {
		t.Run("metadata/"+tt.name, func(t *testing.T) {
			h, says := tt.answer, tt.says
			if h == nil {
				h, says = metadataHandler(), "metadata/metadata-other"
			}
			if says != "" {
				h = identity.Middleware(says, h)
			}
			movie := newMovie(t, serveAs(t, metadataID, h), serve(t, "rating", goodRating))
			r, _ := hostile.Request(http.MethodGet, "/movie", "id=1", "", nil)
			rec := httptest.NewRecorder()
			movie.ServeHTTP(rec, r)
			hostile.Shape(t, r, rec)
			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("answer = %d %s, want 503: the only metadata instance did not answer", rec.Code, rec.Body)
			}
		})
		t.Run("rating/"+tt.name, func(t *testing.T) {
			h, says := tt.answer, tt.says
			if h == nil {
				h, says = goodRating, "rating/rating-other"
			}
			if says != "" {
				h = identity.Middleware(says, h)
			}
			movie := newMovie(t, serve(t, "metadata", metadataHandler()), serveAs(t, ratingID, h))
			r, _ := hostile.Request(http.MethodGet, "/movie", "id=1", "", nil)
			rec := hostile.Serve(t, movie, r)
			var got struct {
				Rating  *float64 `json:"rating"`
				Partial []string `json:"partial"`
			}
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil ||
				got.Rating != nil || len(got.Partial) != 1 || got.Partial[0] != "rating" {
				t.Errorf("answer = %d %s, want 200 with \"partial\":[\"rating\"]", rec.Code, rec.Body)
			}
		})
	}
}
