// Package httpapi is the rating service over HTTP: the server that serves
// its endpoints (GET and PUT /rating) and the client that other services
// call it with.
package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/web"
	"movieexample.com/rating"
)

// NewHTTPHandler serves the endpoints: GET /rating?id=ID&type=movie and
// PUT /rating?id=ID&type=movie&userId=U&value=N.
func NewHTTPHandler(e rating.Endpoints, logger *slog.Logger) *http.ServeMux {
	mux := web.NewMux()
	mux.Handle("/rating", web.Methods{
		http.MethodGet: web.NewServer(e.Get, decodeGetRequest, logger),
		http.MethodPut: web.NewServer(e.Put, decodePutRequest, logger),
	})
	return mux
}

func decodeGetRequest(_ context.Context, r *http.Request) (any, error) {
	q, err := web.Query(r, "id", "type")
	if err != nil {
		return nil, err
	}
	return rating.GetRequest{Key: rating.Key{Type: rating.RecordType(q.Get("type")), ID: q.Get("id")}}, nil
}

func decodePutRequest(_ context.Context, r *http.Request) (any, error) {
	q, err := web.Query(r, "id", "type", "userId", "value")
	if err != nil {
		return nil, err
	}
	value, err := strconv.Atoi(q.Get("value"))
	if err != nil {
		return nil, fmt.Errorf("%w: value must be an integer from %d to %d", errs.ErrInvalid, rating.MinValue, rating.MaxValue)
	}
	key := rating.Key{Type: rating.RecordType(q.Get("type")), ID: q.Get("id")}
	return rating.PutRequest{Key: key, UserID: q.Get("userId"), Value: value}, nil
}
