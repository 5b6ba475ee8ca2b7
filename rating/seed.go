package rating

// Seeded is one rating of the seed data.
type Seeded struct {
	Key    Key
	UserID string
	Value  int
}

func movie(id string) Key { return Key{Type: RecordTypeMovie, ID: id} }

// Seed is the set of ratings every rating instance starts with, so reads
// agree across instances. Movie "5" has none, to show an unrated movie.
var Seed = []Seeded{
	{movie("1"), "alice", 5}, {movie("1"), "bob", 5}, {movie("1"), "carol", 4},
	{movie("2"), "alice", 5}, {movie("2"), "dave", 4},
	{movie("3"), "bob", 5}, {movie("3"), "erin", 4}, {movie("3"), "frank", 4},
	{movie("4"), "carol", 4},
}
