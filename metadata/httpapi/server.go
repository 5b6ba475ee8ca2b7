// Package httpapi is the metadata service over HTTP: the server that
// serves its endpoints (GET and PUT /metadata) and the client that other
// services call it with.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"movieexample.com/metadata"
	"movieexample.com/pkg/web"
)

// NewHTTPHandler serves the endpoints: GET /metadata?id=ID and PUT /metadata
// with a JSON body.
func NewHTTPHandler(e metadata.Endpoints, logger *slog.Logger) *http.ServeMux {
	mux := web.NewMux()
	mux.Handle("/metadata", web.Methods{
		http.MethodGet: web.NewServer(e.Get, decodeGetRequest, logger),
		http.MethodPut: web.NewServer(e.Put, decodePutRequest, logger),
	})
	return mux
}

func decodeGetRequest(_ context.Context, r *http.Request) (any, error) {
	q, err := web.Query(r, "id")
	if err != nil {
		return nil, err
	}
	return metadata.GetRequest{ID: q.Get("id")}, nil
}

func decodePutRequest(_ context.Context, r *http.Request) (any, error) {
	// The ID is in the body: a query parameter would only be ignored.
	if _, err := web.Query(r); err != nil {
		return nil, err
	}
	var m metadata.Metadata
	if err := web.DecodeJSON(r, &m); err != nil {
		return nil, err
	}
	return metadata.PutRequest{Metadata: m}, nil
}
