package mathx

// add is implemented in add_amd64.s.
func add(a, b int64) int64
