package movie

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	httptransport "github.com/go-kit/kit/transport/http"

	"movieexample.com/pkg/server"
)

// NewHTTPHandler serves the endpoints: GET /movie?id=ID.
func NewHTTPHandler(e Endpoints, logger *slog.Logger) *http.ServeMux {
	mux := server.NewMux()
	mux.Handle("/movie", server.Methods{
		http.MethodGet: httptransport.NewServer(e.Get, decodeGetRequest, httptransport.EncodeJSONResponse,
			httptransport.ServerErrorEncoder(server.ErrorEncoder(logger, statusOf))),
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
	case errors.Is(err, ErrBadGateway):
		return http.StatusBadGateway
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
