//go:build race

package inspect

// raceEnabled: the race detector makes sync.Pool drop a quarter of what is
// put back, so allocation counts of pooled paths mean nothing under it.
const raceEnabled = true
