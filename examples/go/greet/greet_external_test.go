package greet_test

import (
	"fmt"
	"testing"

	"example.com/kilnexample/greet"
	"example.com/kilnexample/greet/greettest"
)

func TestGreetingsViaHelper(t *testing.T) {
	if got := greettest.All("Ada", "Grace"); got != "Hello, Ada. Hello, Grace." {
		t.Fatalf("got %q", got)
	}
}

func ExampleHello() {
	fmt.Println(greet.Hello("Gopher"))
	// Output: Hello, Gopher.
}

func BenchmarkHello(b *testing.B) {
	for i := 0; i < b.N; i++ {
		greet.Hello("x")
	}
}
