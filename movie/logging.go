package movie

import (
	"context"
	"errors"
	"log/slog"

	"movieexample.com/pkg/gateway"
	"movieexample.com/rating"
)

// LogRatingFailures returns r with its failures logged. The service answers
// a rating failure with the metadata alone (Details.Partial) and so returns
// no error: without this line its cause would be seen nowhere. It is logged
// once, here, at warning level and with the request's ID; "no ratings yet"
// (gateway.ErrNotFound) is an answer, not a failure, and is not logged.
func LogRatingFailures(r RatingGetter, logger *slog.Logger) RatingGetter {
	return loggedRating{next: r, log: logger}
}

type loggedRating struct {
	next RatingGetter
	log  *slog.Logger
}

func (l loggedRating) Rating(ctx context.Context, id string) (rating.Aggregate, error) {
	agg, err := l.next.Rating(ctx, id)
	if err != nil && !errors.Is(err, gateway.ErrNotFound) {
		l.log.WarnContext(ctx, "rating unavailable; answering without it", "movie_id", id, "err", err)
	}
	return agg, err
}
