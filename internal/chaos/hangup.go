package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// hangUpDelay is how long the slowed instances of the client-hangup
// scenario hold each answer: well past the hang-ups' hangUpMin to
// hangUpMax, so that clients hang up while movie is waiting on them, and
// far below movie's attempt timeout, so the normal load only waits longer.
const hangUpDelay = 20 * time.Millisecond

// hangUpCounts is what the client-hangup scenario saw besides the normal
// load's answers.
type hangUpCounts struct {
	answers       []answer           // the hang-up stream's
	before, after map[string]float64 // movie's GET /movie by status code, around the stream
	errorLines    []logRecord        // movie's ERROR lines from the stream's start on
}

// hangUpSetup leaves one plain and one slowed instance of metadata and of
// rating (no delay yet). A client that hangs up while movie waits on a slow
// metadata instance gets a 499 from movie; one that hangs up while movie
// waits on a slow rating instance only, a 200 without the rating, which
// nobody reads.
func hangUpSetup(ctx context.Context, e *Env) error {
	if err := baseline(ctx, e); err != nil {
		return err
	}
	for _, service := range []string{"metadata", "rating"} {
		if err := e.slowOne(ctx, service); err != nil {
			return err
		}
	}
	return e.settled(ctx)
}

// clientHangup runs, besides the normal load, a stream of requests whose
// clients hang up 1 to 5ms after sending, and reads from movie's metrics
// and log how it counted and logged them.
func clientHangup(ctx context.Context, e *Env, r *Result) error {
	var slowed []*instance
	for _, service := range []string{"metadata", "rating"} {
		for _, in := range e.instances[service] {
			if in.proxy != nil {
				in.proxy.setDelay(hangUpDelay)
				slowed = append(slowed, in)
			}
		}
	}
	defer func() {
		for _, in := range slowed {
			in.proxy.setDelay(0)
		}
	}()
	e.progress("%d instances hold every answer %s", len(slowed), hangUpDelay)
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	before, err := requestsByCode(e.probe, e.movie.Addr, "/movie")
	if err != nil {
		return fmt.Errorf("movie's metrics: %w", err)
	}
	started := time.Now()
	// Clients of their own: a hang-up closes its connection, and the
	// normal load's pool is left alone.
	client := newClient(10 * time.Second)
	defer client.CloseIdleConnections()
	stream := startHangUps(client, e.movie.Addr, e.cfg.Rate/2, e.cfg.Seed^0x68616e67)
	err = hold(ctx, 2*e.cfg.Hold)
	answers := stream.finish()
	if err != nil {
		return err
	}
	e.progress("%d requests sent by clients that hang up", len(answers))
	// Movie serves a request its client left until its upstream calls see
	// the cancellation, a few milliseconds here; Hold later, its metrics
	// count every one of them.
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	after, err := requestsByCode(e.probe, e.movie.Addr, "/movie")
	if err != nil {
		return fmt.Errorf("movie's metrics: %w", err)
	}
	h := &hangUpCounts{answers: answers, before: before, after: after}
	e.movieLog.refresh()
	for _, rec := range e.movieLog.recs {
		if rec.Level == "ERROR" && !rec.Time.Before(started) {
			h.errorLines = append(h.errorLines, rec)
		}
	}
	r.hangUps = h
	return nil
}

// checkHangUp expects movie to have counted hang-ups as 499 (some) and none
// as a 5xx, and to have logged no ERROR line for them. Every 5xx that movie
// counted must be one a client saw: with no failed answer, none.
func checkHangUp(r *Result, answers []answer) {
	h := r.hangUps
	if h == nil {
		return // the run stopped early, and said why
	}
	seen5xx := 0
	for _, a := range answers {
		if a.status >= 500 {
			seen5xx++
		}
	}
	var hungUp, answered, bad int
	for _, a := range h.answers {
		switch a.outcome {
		case HungUp:
			hungUp++
			continue
		case Failed, Wrong:
			bad++
		}
		answered++
		if a.status >= 500 {
			seen5xx++
		}
	}
	var counted5xx float64
	for code, n := range h.after {
		if strings.HasPrefix(code, "5") {
			counted5xx += n - h.before[code]
		}
	}
	counted499 := h.after["499"] - h.before["499"]
	r.Notes = append(r.Notes,
		fmt.Sprintf("hang-up stream: %d sent, %d hung up before the answer, %d answered first", len(h.answers), hungUp, answered),
		fmt.Sprintf("movie counted meanwhile: %.0f answers 499, %.0f 5xx; logged %d ERROR lines", counted499, counted5xx, len(h.errorLines)))

	switch {
	case hungUp == 0:
		r.Problems = append(r.Problems, "no client hung up before its answer: the scenario tested nothing")
	case counted499 == 0:
		r.Problems = append(r.Problems, "movie counted no 499: no hang-up reached it while it waited on metadata")
	}
	if extra := int(counted5xx) - seen5xx; extra > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("movie counted %d 5xx answers that no client saw: hang-ups counted as server errors", extra))
	}
	if n := len(h.errorLines); n > 0 {
		first := h.errorLines[0]
		r.Problems = append(r.Problems, fmt.Sprintf("movie logged %d ERROR lines while clients hung up, the first: %q %s", n, first.Msg, first.Err))
	}
	if bad > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of the hang-up stream's answers that came back were failed or wrong", bad))
	}
}
