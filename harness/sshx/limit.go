package sshx

import "bytes"

// DefaultOutputLimit is how much of one output stream or file from the
// guest is held in memory on this machine: its head. The guest is not
// trusted to be brief, and a container running `yes` would otherwise fill
// the host's memory. WithOutputLimit and the limit given to
// ReadAndTruncate change it.
const DefaultOutputLimit = 16 << 20

// Head is the start of a file or stream from the guest, cut at a limit.
type Head struct {
	Data []byte
	// Size is the whole size, as counted or as the guest reported it:
	// more than len(Data) when the rest was cut off.
	Size int64
}

// Truncated reports whether the rest was cut off.
func (h Head) Truncated() bool { return h.Size > int64(len(h.Data)) }

// headBuffer keeps the first limit bytes written to it and counts all of
// them. It never fails a write: a failed write would stop the SSH
// session's copy, and the guest's command would then block on a full pipe
// instead of ending.
type headBuffer struct {
	limit int64
	buf   bytes.Buffer
	total int64
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.total += int64(len(p))
	if room := h.limit - int64(h.buf.Len()); room > 0 {
		h.buf.Write(p[:min(int64(len(p)), room)])
	}
	return len(p), nil
}
