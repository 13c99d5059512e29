// Package report formats a summary; it sits between the command and the libraries so that an
// edit to greet shows which packages recompile.
package report

import (
	"fmt"

	"example.com/kilnexample/greet"
	"example.com/kilnexample/mathx"
	"example.com/kilnexample/textdiff"
)

// Summary describes the greeting of name.
func Summary(name string) string {
	g := greet.Hello(name)
	changed := textdiff.Lines(g, greet.Hello("World")) != ""
	return fmt.Sprintf("%s (%d chars, %d words, differs from World: %v)", g, mathx.Sum([]int64{int64(len(g))}), greet.Words(name), changed)
}
