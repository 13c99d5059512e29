// Package greet builds greetings from an embedded template.
package greet

import (
	_ "embed"
	"strings"
)

//go:embed greeting.txt
var template string

// Hello greets name with the embedded template.
func Hello(name string) string {
	return strings.ReplaceAll(strings.TrimSpace(template), "NAME", name)
}

// shout is unexported: only the internal test sees it.
func shout(s string) string { return strings.ToUpper(s) + "!" }

// Words counts the words of a greeting for name. It is not inlined, so an edit to its body leaves
// greet's export data unchanged and recompiles no importer.
//
//go:noinline
func Words(name string) int {
	return len(strings.Fields(Hello(name)))
}
