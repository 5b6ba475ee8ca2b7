package rating

import (
	"context"

	"github.com/go-kit/kit/endpoint"
)

// Endpoints collects the service's go-kit endpoints.
type Endpoints struct {
	Get endpoint.Endpoint
	Put endpoint.Endpoint
}

// GetRequest asks for a record's average rating.
type GetRequest struct{ Key Key }

// PutRequest records one user's rating of a record.
type PutRequest struct {
	Key    Key
	UserID string
	Value  int
}

// MakeEndpoints returns the endpoints of s.
func MakeEndpoints(s Service) Endpoints {
	return Endpoints{Get: MakeGetEndpoint(s), Put: MakePutEndpoint(s)}
}

// MakeGetEndpoint returns an endpoint answering a GetRequest with an
// Aggregate.
func MakeGetEndpoint(s Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(GetRequest)
		return s.Get(ctx, req.Key)
	}
}

// MakePutEndpoint returns an endpoint answering a PutRequest with the new
// Aggregate.
func MakePutEndpoint(s Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(PutRequest)
		return s.Put(ctx, req.Key, req.UserID, req.Value)
	}
}
