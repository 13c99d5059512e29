package mathx

import "testing"

func TestSum(t *testing.T) {
	if got := Sum([]int64{1, 2, 3, 40}); got != 46 {
		t.Fatalf("Sum = %d", got)
	}
}

func FuzzAdd(f *testing.F) {
	f.Add(int64(1), int64(2))
	f.Fuzz(func(t *testing.T, a, b int64) {
		if Add(a, b) != a+b {
			t.Fatal("mismatch")
		}
	})
}
