package chaos

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what one scenario measured.
type Result struct {
	Name, Title string
	// Sent requests; Failed ones (transport error, non-200, no metadata),
	// ServerErrors the failed ones that were a 5xx; Wrong ones (an answer
	// that is not the truth: see Outcome); Degraded ones (200 with the
	// rating marked missing).
	Sent, Failed, ServerErrors, Wrong, Degraded int
	// Expected is, in the dependency-down scenario, how many answers were
	// due while rating was down and so had to be degraded.
	Expected int
	// Latency of every answer, and of the degraded ones alone.
	Latency, DegradedLatency Latencies
	// Split is how many requests each upstream instance served.
	Split []Share
	// Effects are how long each change took to take effect; a negative
	// duration means it was not seen.
	Effects []Effect
	// Failures and Wrongs hold the first few failures' and wrong answers'
	// details.
	Failures, Wrongs []string
	// Notes are what a scenario counted besides the load's answers.
	Notes []string
	// Problems lists every expectation the scenario missed; none means it
	// passed.
	Problems []string
	// SlowShare is, in the slower-instance scenario, the slower rating
	// instance's share of the requests the rating instances served.
	SlowShare float64
	// LoadAvg is the machine's 1-minute load average when the scenario
	// ended: the figures of a shared machine mean little without it.
	LoadAvg string

	downFrom, downUntil, fullFrom time.Time
	hangUps                       *hangUpCounts // the client-hangup scenario's
}

// Share is one instance's part of a scenario's upstream traffic.
type Share struct {
	Instance string
	Served   int
}

// Effect is the time one change took to take effect.
type Effect struct {
	What string
	Took time.Duration
}

// maxFailures is how many failures, and how many wrong answers, a result
// keeps the details of.
const maxFailures = 5

func (a answer) String() string {
	return fmt.Sprintf("due %s, after %s: %s", a.due.Format("15:04:05.000"), a.latency.Round(time.Millisecond), a.detail)
}

func (r *Result) effect(what string, took time.Duration) {
	r.Effects = append(r.Effects, Effect{What: what, Took: took})
}

// tally counts the answers. A degraded answer is a lost rating, so it is a
// problem in every scenario but the one where rating is meant to be down.
func (r *Result) tally(answers []answer, degradedExpected bool) {
	r.Sent = len(answers)
	for _, a := range answers {
		switch a.outcome {
		case Failed:
			r.Failed++
			if a.status >= 500 {
				r.ServerErrors++
			}
			if len(r.Failures) < maxFailures {
				r.Failures = append(r.Failures, a.String())
			}
		case Wrong:
			r.Wrong++
			if len(r.Wrongs) < maxFailures {
				r.Wrongs = append(r.Wrongs, a.String())
			}
		case Degraded:
			r.Degraded++
		}
	}
	r.Latency = summarize(answers, nil)
	if r.Failed > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d requests failed (%d with a 5xx)", r.Failed, r.Sent, r.ServerErrors))
	}
	if r.Wrong > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d answers were wrong", r.Wrong, r.Sent))
	}
	if r.Degraded > 0 && !degradedExpected {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d answers came without the rating", r.Degraded, r.Sent))
	}
}

// split turns two counter snapshots into each instance's share.
func (r *Result) split(before, after map[*instance]float64) {
	for in, n := range after {
		if d := int(n - before[in]); d > 0 {
			r.Split = append(r.Split, Share{Instance: in.label, Served: d})
		}
	}
	slices.SortFunc(r.Split, func(a, b Share) int { return strings.Compare(a.Instance, b.Instance) })
}

// OK reports whether the scenario met every expectation.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// Print writes the results as a table, then each scenario's effects,
// split and problems.
func Print(w io.Writer, results []*Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsent\tfailed\twrong\tdegraded\tp50\tp99\tmax\tload\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.Name, r.Sent, r.Failed, r.Wrong, r.Degraded,
			ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.Max), r.LoadAvg)
	}
	tw.Flush()
	for _, r := range results {
		fmt.Fprintf(w, "\n%s: %s\n", r.Name, r.Title)
		for _, e := range r.Effects {
			took := "not seen"
			if e.Took >= 0 {
				took = e.Took.Round(time.Millisecond).String()
			}
			fmt.Fprintf(w, "  %-42s %s\n", e.What, took)
		}
		if r.Expected > 0 {
			fmt.Fprintf(w, "  %-42s %d (%d due while rating was down), p50 %s p99 %s max %s\n", "degraded answers",
				r.Degraded, r.Expected, ms(r.DegradedLatency.P50), ms(r.DegradedLatency.P99), ms(r.DegradedLatency.Max))
		}
		var parts []string
		for _, s := range r.Split {
			parts = append(parts, fmt.Sprintf("%s %d", s.Instance, s.Served))
		}
		fmt.Fprintf(w, "  %-42s %s\n", "requests served per instance", strings.Join(parts, ", "))
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  failure: %s\n", f)
		}
		for _, f := range r.Wrongs {
			fmt.Fprintf(w, "  wrong: %s\n", f)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  PROBLEM: %s\n", p)
		}
	}
}

// ms prints a latency in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

// loadAvg returns the 1-minute load average, or "" where the system does
// not say (it is read from Linux's /proc).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
