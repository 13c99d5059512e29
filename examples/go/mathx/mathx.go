// Package mathx has a function written in assembly on amd64 and in Go elsewhere.
package mathx

// Add returns a+b.
func Add(a, b int64) int64 { return add(a, b) }

// Sum adds up xs.
//
//go:noinline
func Sum(xs []int64) int64 {
	var total int64
	for _, x := range xs {
		total = Add(total, x)
	}
	return total
}
