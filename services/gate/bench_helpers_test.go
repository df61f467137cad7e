package gate

import (
	"sort"
	"time"
)

var epoch = time.Now()

func nowNanos() int64 { return int64(time.Since(epoch)) }

func percentile(ds []float64, p float64) float64 {
	s := append([]float64(nil), ds...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}
