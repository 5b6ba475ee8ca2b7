package chaos

import (
	"net/http"
	"testing"
)

// TestJudge checks the classification of movie's answers against the seed
// catalogue, wrong answers above all: each looks like an answer.
func TestJudge(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		status int
		body   string
		want   Outcome
	}{
		{"full", "1", 200, `{"metadata":{"id":"1","title":"The Shawshank Redemption"},"rating":4.666666666666667}`, Full},
		{"no rating for an unrated movie", "5", 200, `{"metadata":{"id":"5","title":"Seven Samurai"}}`, Full},
		{"rating said missing", "2", 200, `{"metadata":{"id":"2","title":"The Godfather"},"partial":["rating"]}`, Degraded},
		{"rating left out silently", "2", 200, `{"metadata":{"id":"2","title":"The Godfather"}}`, Wrong},
		{"another rating", "4", 200, `{"metadata":{"id":"4","title":"Parasite"},"rating":4.5}`, Wrong},
		{"a rating for an unrated movie", "5", 200, `{"metadata":{"id":"5","title":"Seven Samurai"},"rating":4}`, Wrong},
		{"another movie", "3", 200, `{"metadata":{"id":"1","title":"The Shawshank Redemption"},"rating":4.666666666666667}`, Wrong},
		{"not found for a movie that exists", "3", 404, `{"error":"movie not found"}`, Wrong},
		{"not found under another status", "3", 502, `{"error":"movie not found upstream"}`, Wrong},
		{"unavailable", "3", 503, `{"error":"service unavailable"}`, Failed},
		{"200 without metadata", "3", 200, `{}`, Failed},
		{"200 that is not JSON", "3", 200, `<html>`, Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, detail := judge(tt.id, tt.status, []byte(tt.body))
			if got != tt.want {
				t.Errorf("judge(%s, %d %s) = %v (%s), want %v", tt.id, tt.status, http.StatusText(tt.status), got, detail, tt.want)
			}
		})
	}
}
