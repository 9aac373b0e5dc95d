//go:build !unix

package pipeline

// processExists cannot tell here: every process is taken to exist, so no
// run is marked failed.
func processExists(int) bool { return true }
