package rating

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"

	"movieexample.com/pkg/server"
)

// NewHTTPHandler serves the endpoints: GET /rating?id=ID&type=movie and
// PUT /rating?id=ID&type=movie&userId=U&value=N.
func NewHTTPHandler(e Endpoints, logger *slog.Logger) http.Handler {
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

// single returns the one value of query parameter name; a missing or
// repeated parameter is ErrInvalidArgument, so "id=1&id=2" is never read as
// whichever comes first.
func single(q url.Values, name string) (string, error) {
	if len(q[name]) != 1 {
		return "", fmt.Errorf("%w: exactly one %s query parameter is required", ErrInvalidArgument, name)
	}
	return q.Get(name), nil
}

func decodeKey(q url.Values) (Key, error) {
	id, err := single(q, "id")
	if err != nil {
		return Key{}, err
	}
	typ, err := single(q, "type")
	if err != nil {
		return Key{}, err
	}
	return Key{Type: RecordType(typ), ID: id}, nil
}

func decodeGetRequest(_ context.Context, r *http.Request) (any, error) {
	key, err := decodeKey(r.URL.Query())
	if err != nil {
		return nil, err
	}
	return GetRequest{Key: key}, nil
}

func decodePutRequest(_ context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	key, err := decodeKey(q)
	if err != nil {
		return nil, err
	}
	user, err := single(q, "userId")
	if err != nil {
		return nil, err
	}
	raw, err := single(q, "value")
	if err != nil {
		return nil, err
	}
	value, err := strconv.Atoi(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: value must be an integer from %d to %d", ErrInvalidArgument, MinValue, MaxValue)
	}
	return PutRequest{Key: key, UserID: user, Value: value}, nil
}
