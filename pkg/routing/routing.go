// Package routing is what an instance string says about routing calls to
// the instance, beyond who it is and where (package identity): its weight
// and its tags, as the instance registered them. Discovery appends them to
// the instance string it publishes; the balancer reads them back. Keeping
// them in the string keeps go-kit's sd.Instancer contract (strings) and
// makes a changed weight or tag set a changed instance, which every cache
// keyed on the string then notices.
package routing

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Attrs are an instance's routing attributes.
type Attrs struct {
	// Weight is its share of the calls relative to the others' (Consul's
	// Weights.Passing); at least 1.
	Weight int
	// Tags are its Consul tags, in the order it registered them.
	Tags []string
}

// DefaultWeight is the weight of an instance that registered none, as in
// Consul.
const DefaultWeight = 1

// sep starts the attributes. It cannot occur in the address before it (an
// IP and a port), and url.Values escapes it in a tag.
const sep = '#'

// With returns instance with a's attributes appended: "rating/rating-<id>@
// 10.0.0.7:8082#t=v2&w=9"; instance as it is if they are the defaults
// (weight 1, no tags), which keeps the common case short in every log line.
func With(instance string, a Attrs) string {
	if a.Weight <= DefaultWeight && len(a.Tags) == 0 {
		return instance
	}
	v := url.Values{"w": {strconv.Itoa(max(a.Weight, DefaultWeight))}}
	if len(a.Tags) > 0 {
		v["t"] = a.Tags
	}
	return instance + string(sep) + v.Encode()
}

// Split returns the instance string without its attributes, and the
// attributes (DefaultWeight and no tags where they are missing or do not
// parse: a string from elsewhere still routes, as any other instance).
func Split(s string) (string, Attrs) {
	a := Attrs{Weight: DefaultWeight}
	i := strings.LastIndexByte(s, sep)
	if i < 0 || i < strings.LastIndexByte(s, '@') {
		return s, a
	}
	v, err := url.ParseQuery(s[i+1:])
	if err != nil {
		return s[:i], a
	}
	if w, err := strconv.Atoi(v.Get("w")); err == nil && w >= 1 {
		a.Weight = w
	}
	a.Tags = v["t"]
	return s[:i], a
}

// Has reports whether the attributes carry tag.
func (a Attrs) Has(tag string) bool { return slices.Contains(a.Tags, tag) }
