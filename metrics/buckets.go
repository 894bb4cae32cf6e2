package metrics

// latencyBuckets suit dials and stream opens: 0.5 ms to 30 s.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
