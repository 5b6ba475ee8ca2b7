package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/identity"
)

// TestGetFactoryChecksIdentity: an answer counts only if it comes from the
// instance its instance string names; then, and only then, its status means
// what it says.
func TestGetFactoryChecksIdentity(t *testing.T) {
	const named = "rating/rating-1"
	errNotFound := errs.New(errs.NotFound, "not found")
	factory := GetFactory(NewTransport(), "/x", func(any) string { return "" },
		DecodeAnswer(MaxAnswerBytes, errNotFound, func(struct{}) error { return nil }))
	tests := []struct {
		name   string
		says   []string // the identity headers of the answer
		status int
		header string // a Retry-After header, if set
		want   error  // nil for an answer
	}{
		{"right instance", []string{named}, 200, "", nil},
		{"right instance, not found", []string{named}, 404, "", errNotFound},
		{"right instance, shedding", []string{named}, 503, "1", errs.ErrOverloaded},
		{"right instance, 503 without Retry-After", []string{named}, 503, "", ErrUpstreamStatus},
		{"no identity", nil, 200, "", identity.ErrWrongInstance},
		{"no identity, not found", nil, 404, "", identity.ErrWrongInstance},
		{"no identity, shedding", nil, 503, "1", identity.ErrWrongInstance},
		{"another instance of the service", []string{"rating/rating-2"}, 200, "", identity.ErrWrongInstance},
		{"another service, not found", []string{"metadata/metadata-1"}, 404, "", identity.ErrWrongInstance},
		{"two identities", []string{named, named}, 200, "", identity.ErrWrongInstance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for _, v := range tt.says {
					w.Header().Add(identity.Header, v)
				}
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, `{}`)
			}))
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			ep, _, err := factory(identity.Instance(named, addr))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ep(context.Background(), nil)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want == identity.ErrWrongInstance {
				if errs.KindOf(err) != errs.Unavailable {
					t.Errorf("kind %v, want Unavailable: another instance may answer", errs.KindOf(err))
				}
				if !strings.Contains(err.Error(), named) || !strings.Contains(err.Error(), addr) {
					t.Errorf("error %q does not say which instance was expected where", err)
				}
			}
		})
	}
	t.Run("instance without identity", func(t *testing.T) {
		if _, _, err := factory("127.0.0.1:1"); err == nil {
			t.Error("factory accepted an instance string that names no identity")
		}
	})
}
