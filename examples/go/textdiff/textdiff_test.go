package textdiff

import "testing"

func TestLines(t *testing.T) {
	if d := Lines("a\nb", "a\nb"); d != "" {
		t.Fatalf("equal texts differ: %s", d)
	}
	if d := Lines("a\nb", "a\nc"); d == "" {
		t.Fatal("different texts reported equal")
	}
}
