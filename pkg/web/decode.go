package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"movieexample.com/pkg/errs"
)

// MaxBodyBytes is the largest request body a service reads; a larger one is
// answered 413.
const MaxBodyBytes = 64 << 10

// Errors of the decoders. Every other malformed request is errs.ErrInvalid,
// wrapped with the reason.
var (
	// ErrBodyTooLarge means the request body exceeded MaxBodyBytes.
	ErrBodyTooLarge = errs.New(errs.TooLarge, "request body too large")
	// ErrUnsupportedMediaType means a body was sent with a content type other
	// than application/json.
	ErrUnsupportedMediaType = errs.New(errs.UnsupportedMediaType, "content type must be application/json")
)

// Query parses r's query string strictly and returns it. Each of names must
// appear exactly once and no other parameter may appear: a repeated
// parameter is never read as whichever copy comes first, and a misspelt one
// is reported rather than ignored. A malformed query string (a bad %-escape,
// a ';' separator), which r.URL.Query would silently drop part of, is
// refused too. Every failure is errs.ErrInvalid, wrapped with the reason.
func Query(r *http.Request, names ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed query string", errs.ErrInvalid)
	}
	for name := range q {
		if !slices.Contains(names, name) {
			// %.64q: the name is the client's, bound what is echoed back.
			return nil, fmt.Errorf("%w: unknown query parameter %.64q", errs.ErrInvalid, name)
		}
	}
	for _, name := range names {
		if len(q[name]) != 1 {
			return nil, fmt.Errorf("%w: exactly one %s query parameter is required", errs.ErrInvalid, name)
		}
	}
	return q, nil
}

// DecodeJSON decodes a JSON request body into v, strictly: the content type
// must be JSON (or absent), the body at most MaxBodyBytes, with no unknown
// field, no key twice in one object and nothing after the value. It returns
// ErrUnsupportedMediaType, ErrBodyTooLarge, or errs.ErrInvalid (wrapped,
// with the reason) for any other malformed body.
func DecodeJSON(r *http.Request, v any) error {
	if !isJSON(r.Header.Get("Content-Type")) {
		return ErrUnsupportedMediaType
	}
	body, err := readBody(r)
	if err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			return err
		}
		return fmt.Errorf("%w: reading the body: %w", errs.ErrInvalid, err)
	}
	// checkKeys also rejects malformed JSON, trailing garbage included,
	// before encoding/json sees a body other parsers would read differently.
	if err := checkKeys(body); err != nil {
		var syntax *json.SyntaxError
		switch {
		case errors.Is(err, errDuplicateKey):
			return fmt.Errorf("%w: %w in the JSON body", errs.ErrInvalid, err)
		case errors.As(err, &syntax):
			return fmt.Errorf("%w: malformed JSON body at byte %d", errs.ErrInvalid, syntax.Offset)
		}
		return fmt.Errorf("%w: malformed JSON body", errs.ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: empty body, a JSON object is expected", errs.ErrInvalid)
		case errors.As(err, &typ) && typ.Field == "":
			return fmt.Errorf("%w: the JSON body must be an object", errs.ErrInvalid)
		case errors.As(err, &typ):
			return fmt.Errorf("%w: field %.64q must not be a JSON %s", errs.ErrInvalid, typ.Field, typ.Value)
		}
		// What is left is encoding/json's `unknown field "x"`.
		return fmt.Errorf("%w: %s", errs.ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return fmt.Errorf("%w: more than one JSON value in the body", errs.ErrInvalid)
	}
	return nil
}

// isJSON reports whether a request's Content-Type allows a JSON body: absent
// (clients that send none mean the API's only format), or application/json
// with no charset but UTF-8, which is all JSON may be (RFC 8259).
func isJSON(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// readBody reads the whole body of r, refusing it as soon as it is known to
// be over MaxBodyBytes, from its Content-Length or from reading: a too large
// body is always a 413, whatever its first 64 KiB say.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBodyBytes {
		return nil, ErrBodyTooLarge
	}
	// go-kit decoders get no ResponseWriter; with a nil one MaxBytesReader
	// still caps the read, it only cannot ask the server to close the
	// connection, which the 413 we answer makes unnecessary.
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, ErrBodyTooLarge
	}
	return body, err
}

// errDuplicateKey means a JSON object has the same key twice.
var errDuplicateKey = errors.New("duplicate key")

// checkKeys walks the JSON text data and returns a *json.SyntaxError (or
// io.ErrUnexpectedEOF) if it is malformed, and errDuplicateKey (wrapped with
// the key) if any object in it has a key twice. encoding/json takes the last
// of duplicate keys, while other parsers take the first: a body that two
// parsers read differently is refused. Keys are compared as encoding/json
// matches them to struct fields, case-insensitively, so {"title":..,
// "Title":..} is a duplicate too.
func checkKeys(data []byte) error {
	type object struct {
		keys    map[string]struct{}
		wantKey bool
	}
	// stack holds one entry per open object or array; nil for an array.
	var stack []*object
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // no float parsing: numbers only need to be skipped
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) && len(stack) > 0 {
			// Token reports input that ends inside a value as a plain EOF.
			return io.ErrUnexpectedEOF
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			key := foldKey(tok.(string)) // Token returns only strings in key position
			if _, dup := top.keys[key]; dup {
				return fmt.Errorf("%w %.64q", errDuplicateKey, tok.(string))
			}
			if top.keys == nil {
				top.keys = make(map[string]struct{})
			}
			top.keys[key] = struct{}{}
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		// A value starts: the object holding it expects a key next.
		if top != nil {
			top.wantKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{wantKey: true})
		case json.Delim('['):
			stack = append(stack, nil)
		}
	}
}

// foldKey maps every rune of s to the smallest rune it case-folds to, so
// that foldKey(a) == foldKey(b) exactly when encoding/json would match a and
// b to the same field (bytes.EqualFold).
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			return r
		}
		for {
			f := unicode.SimpleFold(r)
			if f <= r {
				return f
			}
			r = f
		}
	}, s)
}
