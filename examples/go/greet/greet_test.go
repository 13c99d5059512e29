package greet

import (
	"os"
	"strings"
	"testing"
)

func TestShout(t *testing.T) {
	if got := shout("hi"); got != "HI!" {
		t.Fatalf("shout(hi) = %q", got)
	}
}

// TestNamesFromTestdata reads a data file relative to the package directory, as `go test` allows.
func TestNamesFromTestdata(t *testing.T) {
	data, err := os.ReadFile("testdata/names.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := Hello(strings.TrimSpace(string(data))); got != "Hello, Ada." {
		t.Fatalf("got %q", got)
	}
}
