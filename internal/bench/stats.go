package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
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

// bootstrapResamples is enough for stable 2.5% and 97.5% percentiles.
const bootstrapResamples = 4000

// bootstrapCI returns the 95% percentile-bootstrap interval of stat over samples:
// each resample draws every series anew, with replacement, from its own values.
// The generator is seeded, so one report's samples always give one interval.
func bootstrapCI(stat func(series ...[]float64) float64, series ...[]float64) (lo, hi float64) {
	rng := rand.New(rand.NewPCG(1, 2))
	stats := make([]float64, 0, bootstrapResamples)
	re := make([][]float64, len(series))
	for i, s := range series {
		if len(s) == 0 {
			return math.NaN(), math.NaN()
		}
		re[i] = make([]float64, len(s))
	}
	for range bootstrapResamples {
		for i, s := range series {
			for j := range re[i] {
				re[i][j] = s[rng.IntN(len(s))]
			}
		}
		if v := stat(re...); !math.IsNaN(v) {
			stats = append(stats, v)
		}
	}
	slices.Sort(stats)
	return percentile(stats, 0.025), percentile(stats, 0.975)
}

// judge sets r's verdict from the 95% interval [lo, hi] of its judged quantity
// (the ratio when r has a baseline, else the value): pass when the whole interval
// meets the target, FAIL when none of it does, and inconclusive when the interval
// straddles the bound — on a busy machine a verdict from the point estimate alone
// would be chance.
func (r *Result) judge(lo, hi float64) {
	r.CILow, r.CIHigh = lo, hi
	r.Pass, r.Inconclusive = nil, ""
	if r.Target == nil {
		return
	}
	inLo, inHi := r.Target.met(lo), r.Target.met(hi)
	switch {
	case inLo && inHi:
		r.Pass = boolPtr(true)
	case !inLo && !inHi:
		r.Pass = boolPtr(false)
	default:
		r.Inconclusive = fmt.Sprintf("the 95%% interval %s to %s straddles the target %s: the samples vary more than the target's margin at this machine's load; a quieter machine (or more -runs, where the scenario uses them) narrows it",
			formatNumber(lo), formatNumber(hi), r.Target)
	}
}

func boolPtr(b bool) *bool { return &b }
