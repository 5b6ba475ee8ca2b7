package web_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"movieexample.com/metadata"
	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/web"
	"movieexample.com/rating"
)

// fuzzMaxBytes is the body cap while fuzzing: small, so that the fuzzer's
// inputs reach it; the cap's own value changes nothing in DecodeAnswer's
// logic.
const fuzzMaxBytes = 1 << 10

// fuzzDecode feeds dec an upstream answer with status and body and checks
// that it is either a value that passed check, or an error the gateway's
// retry policy and the movie service understand: notFound for a 404,
// ErrUpstreamStatus (Unavailable, so retried) for a 5xx, ErrBadResponse
// (BadGateway, not retried) for anything else.
func fuzzDecode[T any](t *testing.T, dec web.DecodeFunc, check func(T) error, notFound error, status int, body []byte) {
	if status < 100 || status > 999 {
		return // not a status a response can have
	}
	resp := &http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body))}
	v, err := dec(resp)
	switch {
	case err == nil:
		got, ok := v.(T)
		if !ok || status != http.StatusOK || len(body) > fuzzMaxBytes {
			t.Fatalf("status %d, %d bytes: accepted %#v", status, len(body), v)
		}
		if err := check(got); err != nil {
			t.Fatalf("accepted %#v, which fails its check: %v", got, err)
		}
	case status == http.StatusNotFound:
		if !errors.Is(err, notFound) {
			t.Fatalf("404: err = %v, want %v", err, notFound)
		}
	case status >= 500:
		if !errors.Is(err, web.ErrUpstreamStatus) || errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("%d: err = %v (kind %v), want ErrUpstreamStatus of kind Unavailable", status, err, errs.KindOf(err))
		}
	default:
		if !errors.Is(err, web.ErrBadResponse) || errs.KindOf(err) != errs.BadGateway {
			t.Fatalf("status %d, body %q: err = %v (kind %v), want ErrBadResponse of kind BadGateway", status, body, err, errs.KindOf(err))
		}
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	dec := web.DecodeAnswer(fuzzMaxBytes, metadata.ErrNotFound, metadata.Metadata.Validate)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		fuzzDecode(t, dec, metadata.Metadata.Validate, metadata.ErrNotFound, status, body)
	})
}

func FuzzDecodeRating(f *testing.F) {
	dec := web.DecodeAnswer(fuzzMaxBytes, rating.ErrNotFound, rating.Aggregate.Plausible)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		fuzzDecode(t, dec, rating.Aggregate.Plausible, rating.ErrNotFound, status, body)
	})
}
