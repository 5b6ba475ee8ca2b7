package movie

import (
	"context"

	"github.com/go-kit/kit/endpoint"
)

// Endpoints collects the service's go-kit endpoints.
type Endpoints struct {
	Get endpoint.Endpoint
}

// GetRequest asks for one movie's details.
type GetRequest struct{ ID string }

// MakeEndpoints returns the endpoints of s.
func MakeEndpoints(s Service) Endpoints {
	return Endpoints{Get: MakeGetEndpoint(s)}
}

// MakeGetEndpoint returns an endpoint answering a GetRequest with Details.
func MakeGetEndpoint(s Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		return s.Get(ctx, request.(GetRequest).ID)
	}
}
