// Package greettest helps tests of greet; it imports greet, so greet's external test recompiles it
// against greet's test variant.
package greettest

import (
	"strings"

	"example.com/kilnexample/greet"
)

// All greets every name.
func All(names ...string) string {
	var out []string
	for _, n := range names {
		out = append(out, greet.Hello(n))
	}
	return strings.Join(out, " ")
}
