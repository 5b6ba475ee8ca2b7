package httpapi

import (
	"context"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"

	"movieexample.com/metadata"
	"movieexample.com/pkg/web"
)

// NewFactory returns the sd.Factory of the get endpoint of one metadata
// instance, over rt: a metadata.GetRequest in, a metadata.Metadata out, or
// metadata.ErrNotFound, web.ErrBadResponse, web.ErrUpstreamStatus or
// errs.ErrOverloaded (the instance shed the request). An
// answer is trusted no further than a client's request: only metadata the
// service itself would store is accepted.
func NewFactory(rt http.RoundTripper) sd.Factory {
	return web.GetFactory(rt, "/metadata", encodeGetRequest,
		web.DecodeAnswer(web.MaxAnswerBytes, metadata.ErrNotFound, metadata.Metadata.Validate))
}

func encodeGetRequest(req any) string {
	return "id=" + url.QueryEscape(req.(metadata.GetRequest).ID)
}

// Client is the metadata service as its callers see it. Its Get has the
// signature of metadata.Service's.
type Client struct {
	get endpoint.Endpoint
}

// NewClient returns a Client that calls get, an endpoint reaching the
// endpoints NewFactory makes (in movie, through a gateway.Upstream).
func NewClient(get endpoint.Endpoint) *Client {
	return &Client{get: get}
}

// Get returns the metadata of movie id: metadata.ErrNotFound when the
// service does not know it, or the error of the endpoint that could not
// reach it or could not trust its answer.
func (c *Client) Get(ctx context.Context, id string) (metadata.Metadata, error) {
	resp, err := c.get(ctx, metadata.GetRequest{ID: id})
	if err != nil {
		return metadata.Metadata{}, err
	}
	return resp.(metadata.Metadata), nil
}
