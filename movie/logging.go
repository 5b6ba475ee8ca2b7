package movie

import (
	"context"
	"errors"
	"log/slog"

	"movieexample.com/rating"
)

// LogRatingFailures is a middleware around the rating service: it returns r
// with its failures logged. The service answers a rating failure with the
// metadata alone (Details.Partial) and so returns no error: without this
// line its cause would be seen nowhere. It is logged once, here, at warning
// level and with the request's ID; "no ratings yet" (rating.ErrNotFound) is
// an answer, not a failure, and is not logged.
func LogRatingFailures(r RatingGetter, logger *slog.Logger) RatingGetter {
	return loggedRating{next: r, log: logger}
}

type loggedRating struct {
	next RatingGetter
	log  *slog.Logger
}

func (l loggedRating) Get(ctx context.Context, key rating.Key) (rating.Aggregate, error) {
	agg, err := l.next.Get(ctx, key)
	// A client that went away canceled the call: nothing failed, and the
	// hang-up is logged once, where the answer is written (pkg/web).
	if err != nil && !errors.Is(err, rating.ErrNotFound) && !errors.Is(ctx.Err(), context.Canceled) {
		l.log.WarnContext(ctx, "rating unavailable; answering without it", "movie_id", key.ID, "err", err)
	}
	return agg, err
}
