// Package textdiff reports differences between texts with a third-party module (go-cmp).
package textdiff

import (
	"strings"

	"github.com/google/go-cmp/cmp"
)

// Lines returns a diff of a and b, line by line ("" when equal).
func Lines(a, b string) string {
	return cmp.Diff(strings.Split(a, "\n"), strings.Split(b, "\n"))
}
