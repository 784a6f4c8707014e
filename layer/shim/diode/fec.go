package diode

import (
	"fmt"
	"math"

	"github.com/ouronet/ouro/flow"
)

// DefaultResidual is the block loss a sized parity aims below: the
// probability that more than m of a block's k+m shards are lost.
const DefaultResidual = 1e-6

// Parity returns the least m such that a block of k data and m parity
// shards, each lost independently with probability loss% (the impairment
// stage's and a random-loss link's model), is lost (more than m shards
// missing) with probability at most residual. It fails if no m with
// k+m <= MaxShards is enough.
func Parity(k int, loss, residual float64) (int, error) {
	if k < 1 || k >= MaxShards {
		return 0, fmt.Errorf("diode: k = %d outside [1, %d): %w", k, MaxShards, flow.ErrInvalid)
	}
	if !(loss >= 0 && loss < 100) || !(residual > 0 && residual < 1) {
		return 0, fmt.Errorf("diode: loss %v%% or residual %v out of range: %w", loss, residual, flow.ErrInvalid)
	}
	p := loss / 100
	if p == 0 {
		return 0, nil
	}
	for m := 0; k+m <= MaxShards; m++ {
		if lossTail(k+m, m, p) <= residual {
			return m, nil
		}
	}
	return 0, fmt.Errorf("diode: %v%% loss needs more than %d shards for k = %d: %w", loss, MaxShards, k, flow.ErrInvalid)
}

// lossTail is P(X > m) for X ~ Binomial(n, p), summed in logs.
func lossTail(n, m int, p float64) float64 {
	var sum float64
	lp, lq := math.Log(p), math.Log1p(-p)
	for x := m + 1; x <= n; x++ {
		lc := lgamma(n+1) - lgamma(x+1) - lgamma(n-x+1)
		sum += math.Exp(lc + float64(x)*lp + float64(n-x)*lq)
	}
	return sum
}

func lgamma(n int) float64 {
	v, _ := math.Lgamma(float64(n))
	return v
}
