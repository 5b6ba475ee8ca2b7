package metadata

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	httptransport "github.com/go-kit/kit/transport/http"

	"movieexample.com/pkg/server"
)

// NewHTTPHandler serves the endpoints: GET /metadata?id=ID and PUT /metadata
// with a JSON body.
func NewHTTPHandler(e Endpoints, logger *slog.Logger) *http.ServeMux {
	opts := []httptransport.ServerOption{
		httptransport.ServerErrorEncoder(server.ErrorEncoder(logger, statusOf)),
	}
	mux := server.NewMux()
	mux.Handle("/metadata", server.Methods{
		http.MethodGet: httptransport.NewServer(e.Get, decodeGetRequest, httptransport.EncodeJSONResponse, opts...),
		http.MethodPut: httptransport.NewServer(e.Put, decodePutRequest, httptransport.EncodeJSONResponse, opts...),
	})
	return mux
}

// statusOf is the one table from this service's errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func decodeGetRequest(_ context.Context, r *http.Request) (any, error) {
	q, err := server.Query(r, ErrInvalidArgument, "id")
	if err != nil {
		return nil, err
	}
	return GetRequest{ID: q.Get("id")}, nil
}

func decodePutRequest(_ context.Context, r *http.Request) (any, error) {
	// The ID is in the body: a query parameter would only be ignored.
	if _, err := server.Query(r, ErrInvalidArgument); err != nil {
		return nil, err
	}
	var m Metadata
	if err := server.DecodeJSON(r, &m, ErrInvalidArgument); err != nil {
		return nil, err
	}
	return PutRequest{Metadata: m}, nil
}
