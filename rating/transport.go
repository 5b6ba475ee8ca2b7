package rating

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"

	"movieexample.com/pkg/server"
)

// NewHTTPHandler serves the endpoints: GET /rating?id=ID&type=movie and
// PUT /rating?id=ID&type=movie&userId=U&value=N.
func NewHTTPHandler(e Endpoints, logger *slog.Logger) *http.ServeMux {
	opts := []httptransport.ServerOption{
		httptransport.ServerErrorEncoder(server.ErrorEncoder(logger, statusOf)),
	}
	mux := server.NewMux()
	mux.Handle("/rating", server.Methods{
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
	q, err := server.Query(r, ErrInvalidArgument, "id", "type")
	if err != nil {
		return nil, err
	}
	return GetRequest{Key: Key{Type: RecordType(q.Get("type")), ID: q.Get("id")}}, nil
}

func decodePutRequest(_ context.Context, r *http.Request) (any, error) {
	q, err := server.Query(r, ErrInvalidArgument, "id", "type", "userId", "value")
	if err != nil {
		return nil, err
	}
	value, err := strconv.Atoi(q.Get("value"))
	if err != nil {
		return nil, fmt.Errorf("%w: value must be an integer from %d to %d", ErrInvalidArgument, MinValue, MaxValue)
	}
	key := Key{Type: RecordType(q.Get("type")), ID: q.Get("id")}
	return PutRequest{Key: key, UserID: q.Get("userId"), Value: value}, nil
}
