// Command convert converts a length between the units of units.txt, whose Go table
// (units.go) the Rust tool gogen generates at build time.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Printf("usage: convert VALUE FROM TO\nunits: %v (tables by %s)\n", unitNames, generatedBy)
		os.Exit(2)
	}
	value, err := strconv.ParseFloat(os.Args[1], 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "convert: %v is not a number\n", os.Args[1])
		os.Exit(2)
	}
	from, ok := units[os.Args[2]]
	if !ok {
		fmt.Fprintf(os.Stderr, "convert: unknown unit %q\n", os.Args[2])
		os.Exit(2)
	}
	to, ok := units[os.Args[3]]
	if !ok {
		fmt.Fprintf(os.Stderr, "convert: unknown unit %q\n", os.Args[3])
		os.Exit(2)
	}
	fmt.Printf("%g %s = %g %s\n", value, os.Args[2], value*from/to, os.Args[3])
}
