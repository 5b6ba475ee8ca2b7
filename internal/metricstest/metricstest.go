// Package metricstest reads Prometheus metrics the way Prometheus does, from
// a /metrics endpoint's text exposition or a registry, for movieapp's tests:
// one series' value, the values a label takes, and promlint's verdict on the
// names; and a Prometheus server's answer to an instant query.
package metricstest

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

var client = &http.Client{Timeout: 5 * time.Second}

// Scrape fetches url, a /metrics endpoint, and parses its text exposition.
// Any error fails t.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: status %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mfs
}

// Gather collects g's metric families. Any error fails t.
func Gather(t testing.TB, g prometheus.Gatherer) Families {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	f := Families{}
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	return f
}

// Value returns the value of family name's series whose labels are exactly
// labels (nil for none): a counter's or gauge's value, or a histogram's
// sample count. ok is false when there is no such series.
func (f Families) Value(name string, labels map[string]string) (v float64, ok bool) {
	mf := f[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if maps.Equal(labelMap(m), labels) {
			return value(m), true
		}
	}
	return 0, false
}

// LabelNames returns the sorted label names of family name's series.
func (f Families) LabelNames(name string) []string {
	set := map[string]bool{}
	if mf := f[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				set[l.GetName()] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// LabelValues returns the sorted distinct values label takes in family name.
func (f Families) LabelValues(name, label string) []string {
	set := map[string]bool{}
	if mf := f[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			if v, ok := labelMap(m)[label]; ok {
				set[v] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Type returns family name's type ("counter", "gauge", "histogram", ...),
// or "" if there is no such family.
func (f Families) Type(name string) string {
	if mf := f[name]; mf != nil {
		return strings.ToLower(mf.GetType().String())
	}
	return ""
}

// Lint returns what promlint, the Prometheus naming and instrumentation
// linter, finds wrong with the families whose name starts with prefix.
func (f Families) Lint(t testing.TB, prefix string) []promlint.Problem {
	t.Helper()
	var mfs []*dto.MetricFamily
	for name, mf := range f {
		if strings.HasPrefix(name, prefix) {
			mfs = append(mfs, mf)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	return problems
}

func labelMap(m *dto.Metric) map[string]string {
	ls := map[string]string{}
	for _, l := range m.GetLabel() {
		ls[l.GetName()] = l.GetValue()
	}
	return ls
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// Sample is one series of a Prometheus instant query's result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs the instant PromQL query q against the Prometheus server at
// base ("http://127.0.0.1:9090"). It returns an error rather than failing a
// test, so that a caller can wait for a server that is still starting.
func Query(base, q string) ([]Sample, error) {
	resp, err := client.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %s: %s: %w", q, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s", q, resp.Status, body.Error)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", q, r.Value[1], err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}
