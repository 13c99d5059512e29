//go:build !amd64

package mathx

func add(a, b int64) int64 { return a + b }
