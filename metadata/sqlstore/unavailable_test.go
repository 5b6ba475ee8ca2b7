package sqlstore_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/internal/storetest"
	"movieexample.com/metadata"
	"movieexample.com/metadata/httpapi"
	"movieexample.com/pkg/store"
)

// TestLockedStoreIs503 checks what a client sees when the database is locked
// by another writer for longer than the busy timeout: a 503 with the JSON
// error shape, not a 500 and not the driver's message.
func TestLockedStoreIs503(t *testing.T) {
	c, open := backend(t, store.SQLite)
	c, lock := storetest.Breakable(t, c)
	h := httpapi.NewHTTPHandler(metadata.MakeEndpoints(metadata.NewService(open(t, c))), slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	defer srv.Close()
	lock()

	body := `{"id":"heat","title":"Heat","description":"","director":"Michael Mann"}`
	req, err := http.NewRequest(http.MethodPut, srv.URL+"/metadata", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || strings.TrimSpace(string(got)) != `{"error":"service unavailable"}` {
		t.Errorf("PUT on a locked store: %s %s, want 503 {\"error\":\"service unavailable\"}", resp.Status, got)
	}
}
