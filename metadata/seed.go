package metadata

// Seed is the catalogue every metadata instance starts with, so that reads
// agree across instances from the first request.
var Seed = []Metadata{
	{ID: "1", Title: "The Shawshank Redemption", Director: "Frank Darabont",
		Description: "Two imprisoned men bond over a number of years, finding solace and eventual redemption through acts of common decency."},
	{ID: "2", Title: "The Godfather", Director: "Francis Ford Coppola",
		Description: "The aging patriarch of an organized crime dynasty transfers control of his clandestine empire to his reluctant son."},
	{ID: "3", Title: "Spirited Away", Director: "Hayao Miyazaki",
		Description: "During her family's move to the suburbs, a sullen 10-year-old girl wanders into a world ruled by gods, witches and spirits."},
	{ID: "4", Title: "Parasite", Director: "Bong Joon-ho",
		Description: "Greed and class discrimination threaten the newly formed symbiotic relationship between the wealthy Park family and the destitute Kim clan."},
	{ID: "5", Title: "Seven Samurai", Director: "Akira Kurosawa",
		Description: "A poor village under attack by bandits recruits seven unemployed samurai to help them defend themselves."},
}
