package sqlstore_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/internal/storetest"
	"movieexample.com/pkg/store"
	"movieexample.com/rating"
	"movieexample.com/rating/httpapi"
)

// TestLockedStoreIs503 checks what a client sees when the database is locked
// by another writer for longer than the busy timeout: a 503 with the JSON
// error shape, not a 500 and not the driver's message.
func TestLockedStoreIs503(t *testing.T) {
	c, open := backend(t, store.SQLite)
	c, lock := storetest.Breakable(t, c)
	h := httpapi.NewHTTPHandler(rating.MakeEndpoints(rating.NewService(open(t, c))), slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	defer srv.Close()
	lock()

	req, err := http.NewRequest(http.MethodPut, srv.URL+"/rating?id=1&type=movie&userId=zoe&value=4", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || strings.TrimSpace(string(body)) != `{"error":"service unavailable"}` {
		t.Errorf("PUT on a locked store: %s %s, want 503 {\"error\":\"service unavailable\"}", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want JSON", ct)
	}
}
