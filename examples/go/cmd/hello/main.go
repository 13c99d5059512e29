// Command hello prints a greeting and its summary.
package main

import (
	"fmt"
	"os"

	"example.com/kilnexample/report"
)

var version = "dev"

func main() {
	name := "World"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Println(report.Summary(name))
	fmt.Println("version:", version)
}
