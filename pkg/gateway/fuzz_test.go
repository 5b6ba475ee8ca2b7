package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"movieexample.com/metadata"
	"movieexample.com/rating"
)

// fuzzMaxBytes is the body cap while fuzzing: small, so that the fuzzer's
// inputs reach it; the cap's own value changes nothing in decode's logic.
const fuzzMaxBytes = 1 << 10

// fuzzDecode feeds dec an upstream answer with status and body and checks
// that it is either a value that passed check, or an error the retry policy
// and the movie service understand: ErrNotFound for a 404, a retryable
// statusError for a 5xx, ErrBadResponse for anything else.
func fuzzDecode[T any](t *testing.T, dec decodeFunc, check func(T) error, status int, body []byte) {
	if status < 100 || status > 999 {
		return // not a status a response can have
	}
	resp := &http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body))}
	v, err := dec(resp)
	var se *statusError
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
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("404: err = %v, want ErrNotFound", err)
		}
	case status >= 500:
		if !errors.As(err, &se) || !retryable(err) {
			t.Fatalf("%d: err = %v, want a retryable status error", status, err)
		}
	default:
		if !errors.Is(err, ErrBadResponse) || retryable(err) {
			t.Fatalf("status %d, body %q: err = %v, want ErrBadResponse", status, body, err)
		}
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	dec := decode(fuzzMaxBytes, checkMetadata)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		fuzzDecode[metadata.Metadata](t, dec, checkMetadata, status, body)
	})
}

func FuzzDecodeRating(f *testing.F) {
	dec := decode(fuzzMaxBytes, checkAggregate)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		fuzzDecode[rating.Aggregate](t, dec, checkAggregate, status, body)
	})
}
