package file

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing f's bytes [off, off+n) to disk without
// waiting (sync_file_range with SYNC_FILE_RANGE_WRITE); it is a hint: an
// error changes nothing (the final fsync writes whatever is left).
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
