package bench

import (
	"math"
	"slices"
	"time"
)

// median returns the median of xs, or NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// seconds converts d to seconds rounded to the millisecond, the resolution the
// benchmark's wall-clock figures are reported at.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}

// iqr returns the interquartile range of xs (nearest-rank quartiles), a spread
// that one outlier does not move.
func iqr(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return percentile(s, 0.75) - percentile(s, 0.25)
}
