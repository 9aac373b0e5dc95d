package file

import "os"

// writebackEvery is how many bytes the file sink writes between two
// writeback hints.
const writebackEvery = 8 << 20

// writeback passes what is written to f and, every writebackEvery bytes,
// asks the system to start writing that range to disk (where it can: on
// Linux), so that the fsync that commits the file at the end of the run
// finds little left to write.
type writeback struct {
	f       *os.File
	written int64 // bytes written to f
	hinted  int64 // bytes before this offset were handed to writeback
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.hinted >= writebackEvery {
		startWriteback(w.f, w.hinted, w.written-w.hinted)
		w.hinted = w.written
	}
	return n, err
}
