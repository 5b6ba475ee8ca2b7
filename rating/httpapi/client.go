package httpapi

import (
	"context"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"

	"movieexample.com/pkg/web"
	"movieexample.com/rating"
)

// NewFactory returns the sd.Factory of the get endpoint of one rating
// instance, over rt: a rating.GetRequest in, a rating.Aggregate out, or
// rating.ErrNotFound (no ratings yet), web.ErrBadResponse,
// web.ErrUpstreamStatus or errs.ErrOverloaded (the instance shed the
// request). Only a plausible average is accepted.
func NewFactory(rt http.RoundTripper) sd.Factory {
	return web.GetFactory(rt, "/rating", encodeGetRequest,
		web.DecodeAnswer(web.MaxAnswerBytes, rating.ErrNotFound, rating.Aggregate.Plausible))
}

func encodeGetRequest(req any) string {
	key := req.(rating.GetRequest).Key
	return "type=" + url.QueryEscape(string(key.Type)) + "&id=" + url.QueryEscape(key.ID)
}

// Client is the rating service as its callers see it. Its Get has the
// signature of rating.Service's.
type Client struct {
	get endpoint.Endpoint
}

// NewClient returns a Client that calls get, an endpoint reaching the
// endpoints NewFactory makes (in movie, through a gateway.Upstream).
func NewClient(get endpoint.Endpoint) *Client {
	return &Client{get: get}
}

// Get returns the average rating of key: rating.ErrNotFound when nobody
// rated it yet, or the error of the endpoint that could not reach the
// service or could not trust its answer.
func (c *Client) Get(ctx context.Context, key rating.Key) (rating.Aggregate, error) {
	resp, err := c.get(ctx, rating.GetRequest{Key: key})
	if err != nil {
		return rating.Aggregate{}, err
	}
	return resp.(rating.Aggregate), nil
}
