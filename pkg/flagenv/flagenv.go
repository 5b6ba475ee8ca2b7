// Package flagenv parses command-line flags with environment variables as
// fallbacks, the way every movieapp binary is configured: a flag given on the
// command line wins, else its variable, else the default.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Parse parses args into fs, then fills every flag not given on the command
// line from its environment variable, read with getenv: names[flag] where
// names has the flag, else the flag's name in upper-case snake form (-log-level
// is LOG_LEVEL). A flag whose name maps to "" has no variable. Errors name
// the variable and its value.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string, names map[string]string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env, ok := names[f.Name]
		if !ok {
			env = strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		}
		if env == "" {
			return
		}
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}
