package node

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
)

// rootProgram is the root supervisor's program: the smallest component of
// the node, holding only its fault endpoint (Read) and caps to restart
// the IRM and the signer. When the IRM faults it restarts it, with the
// same back-off as the IRM applies to its own children; the new IRM
// instance then restarts the rest of the node (Node.irmProgram). A
// faulted signer is restarted alone (it keeps no state but the key its
// configuration holds). It never touches a flow or a session, so there
// is little in it that can fail.
func rootProgram(log *slog.Logger, policy irm.RestartPolicy) kernel.Program {
	return func(pd *kernel.PD) error {
		faults, err := pd.Slot(slotFault)
		if err != nil {
			return err
		}
		irmComp, err := pd.Slot(restartSlot(irmName))
		if err != nil {
			return err
		}
		signerComp, err := pd.Slot(restartSlot(SignerName))
		if err != nil {
			return err
		}
		ctx := pd.Context()
		b := irm.NewBackoff(policy, time.Now())
		sb := irm.NewBackoff(policy, time.Now())
		msg := kernel.Msg{Payload: make([]byte, 0, kernel.MaxPayload)}
		for {
			msg.Payload = msg.Payload[:0]
			if _, err := pd.RecvCtx(ctx, faults, &msg); err != nil && !errors.Is(err, kernel.ErrTruncated) {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			f, ok := kernel.DecodeFault(&msg)
			if !ok {
				continue
			}
			child, backoff, what := irmComp, b, "the IRM"
			if f.Component == SignerName {
				child, backoff, what = signerComp, sb, "the signer"
			}
			delay := backoff.Fault(time.Now())
			if child == signerComp {
				log.Warn("signer faulted, restarting", "incarnation", f.Incarnation, "reason", f.Reason, "delay", delay)
			} else {
				log.Warn("IRM faulted, a new IRM restarts the node's components", "incarnation", f.Incarnation, "reason", f.Reason, "delay", delay)
			}
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return nil
				}
			}
			backoff.Started(time.Now())
			if err := pd.Restart(child); err != nil {
				log.Error("restart failed", "child", what, "err", err)
			}
		}
	}
}
