package metadata

import (
	"context"

	"github.com/go-kit/kit/endpoint"
)

// Endpoints collects the service's go-kit endpoints.
type Endpoints struct {
	Get endpoint.Endpoint
	Put endpoint.Endpoint
}

// GetRequest asks for one movie's metadata.
type GetRequest struct{ ID string }

// PutRequest creates or replaces one movie's metadata.
type PutRequest struct{ Metadata Metadata }

// MakeEndpoints returns the endpoints of s.
func MakeEndpoints(s Service) Endpoints {
	return Endpoints{Get: MakeGetEndpoint(s), Put: MakePutEndpoint(s)}
}

// MakeGetEndpoint returns an endpoint answering a GetRequest with Metadata.
func MakeGetEndpoint(s Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(GetRequest)
		return s.Get(ctx, req.ID)
	}
}

// MakePutEndpoint returns an endpoint answering a PutRequest with the stored
// Metadata.
func MakePutEndpoint(s Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(PutRequest)
		if err := s.Put(ctx, req.Metadata); err != nil {
			return nil, err
		}
		return req.Metadata, nil
	}
}
