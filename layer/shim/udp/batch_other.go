//go:build !linux || !(amd64 || arm || arm64)

package udp

import (
	"net/netip"

	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// batchReader is recvmmsg(2) batching, which this target does without.
type batchReader struct{ bufs [][]byte }

func newBatchReader(Device, int) *batchReader  { return nil }
func (r *batchReader) read() (int, error)      { return 0, nil }
func (r *batchReader) length(int) int          { return 0 }
func (r *batchReader) segment(int) int         { return 0 }
func (r *batchReader) addr(int) netip.AddrPort { return netip.AddrPort{} }

// NewBatchSender: no sendmmsg(2) here; the engine sends one at a time.
func (w wire) NewBatchSender() engine.BatchSender[netip.AddrPort] { return nil }
