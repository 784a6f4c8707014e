package kernel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Messages
//
// An endpoint is a rendezvous: whichever of sender and receiver arrives
// second finds the other queued on the endpoint, copies the message
// directly between the two Msg values under the endpoint lock, and wakes
// the first through its waiter's one-slot channel. A Call leaves the caller
// blocked after the rendezvous; the receiver gets a reply cap naming the
// caller's waiter and the call's generation, and Reply copies the answer
// straight into the caller's Msg. Waiters are pooled per incarnation, reply
// caps are plain slots, so no step allocates.

// MaxWords, MaxCaps and MaxPayload bound a message.
const (
	MaxWords   = 4
	MaxCaps    = 3
	MaxPayload = 2048
)

// Msg is an IPC message.
type Msg struct {
	// Label is the message's type, chosen by the protocol.
	Label uint64
	// Words are small inline arguments.
	Words [MaxWords]uint64
	// Caps: when sending, the sender's slots whose caps move to the
	// receiver (the first NCaps; moved only over a cap with Grant, otherwise
	// the message arrives without them). When receiving, the new slots in
	// the receiver's CSpace.
	Caps  [MaxCaps]Cap
	NCaps int
	// Payload: when sending, bytes that are copied (len <= MaxPayload).
	// When receiving, a caller-owned buffer: the kernel copies into
	// Payload[:cap(Payload)] and reslices; ErrTruncated if the message did
	// not fit (what fits is delivered).
	Payload []byte
}

// RecvInfo is what the kernel tells a receiver about a message.
type RecvInfo struct {
	// Badge is the badge of the cap the sender used (0 if unbadged).
	Badge Badge
	// Reply is a one-shot reply cap in the receiver's CSpace when the sender
	// used Call, else 0.
	Reply Cap
}

// Reply-phase states of a waiter, in the low bits of waiter.st (the call's
// generation is in the high bits).
const (
	stIdle uint64 = iota
	stAwaiting
	stDone
	stAbandoned
)

// waiter is one blocked (or about to block) thread of a component. Fields
// above the line are guarded by the lock of the endpoint it is queued on.
type waiter struct {
	ch chan struct{} // one token per wake-up
	pd *PD           // the incarnation it belongs to; nil for kernel sends

	queued     bool
	q          *waitq // the queue it is on, while queued
	next, prev *waiter
	msg        *Msg
	badge      Badge
	rights     Rights
	call       bool
	// ---
	info RecvInfo      // written by the partner before waking a receiver
	err  error         // written by the partner before waking
	st   atomic.Uint64 // gen<<2 | reply-phase state
	// ep is the endpoint of the verb in progress (nil when idle), so that
	// the death of the owning incarnation can find and wake it.
	ep atomic.Pointer[endpoint]
	// watch lists the contexts handlers made with PD.ReplyContext for this
	// waiter's calls; nil unless one was made, so a plain call costs one
	// load. Every node belongs to the current call or an earlier one, so
	// the end of the current call cancels them all.
	watch atomic.Pointer[replyWatch]
}

// replyWatch is one context made by PD.ReplyContext.
type replyWatch struct {
	cancel context.CancelCauseFunc
	next   *replyWatch
}

// callEnded cancels the contexts watching the waiter's call, which has
// just left the awaiting state (replied, aborted or abandoned). It runs
// before the caller is woken (or, for an abandoned call, before it
// returns), so no later call of the waiter can have a watch yet.
func (w *waiter) callEnded(cause error) {
	if w.watch.Load() == nil {
		return
	}
	for x := w.watch.Swap(nil); x != nil; x = x.next {
		x.cancel(cause)
	}
}

func newWaiter(pd *PD) *waiter { return &waiter{ch: make(chan struct{}, 1), pd: pd} }

func (w *waiter) wake() { w.ch <- struct{}{} }

// abortReply fails the call generation gen if it still awaits its reply.
func (w *waiter) abortReply(gen uint64, err error) {
	if w.st.CompareAndSwap(gen<<2|stAwaiting, gen<<2|stDone) {
		w.err = err
		w.callEnded(err)
		w.wake()
	}
}

// waitq is an intrusive FIFO of waiters.
type waitq struct{ head, tail *waiter }

func (q *waitq) push(w *waiter) {
	w.queued, w.q = true, q
	w.next, w.prev = nil, q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
}

func (q *waitq) pop() *waiter {
	w := q.head
	if w != nil {
		q.remove(w)
	}
	return w
}

func (q *waitq) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.next, w.prev, w.queued, w.q = nil, nil, false, nil
}

// endpoint is a synchronous rendezvous.
type endpoint struct {
	hdr
	k *Kernel

	mu    sync.Mutex
	sendq waitq // guarded by mu: blocked senders and callers
	recvq waitq // guarded by mu: blocked receivers
	gone  error // guarded by mu: non-nil once destroyed, what blocked verbs get
}

func (*endpoint) kind() Kind { return KindEndpoint }

// deliver copies s's message to r, moving caps and making a reply cap if s
// is calling. It does not wake either side, except a caller whose call
// failed. The caller holds e.mu.
func (e *endpoint) deliver(s, r *waiter) {
	src, dst := s.msg, r.msg
	r.err = copyMsg(dst, src, r.pd, "recv")
	dst.NCaps = 0
	if src.NCaps > 0 && s.rights&Grant != 0 && s.pd != nil {
		dst.NCaps = e.k.moveCaps(s.pd.cs, src.Caps[:src.NCaps], r.pd.cs, dst.Caps[:])
	}
	r.info = RecvInfo{Badge: s.badge}
	if !s.call {
		return
	}
	gen := s.st.Load()>>2 + 1
	s.st.Store(gen<<2 | stAwaiting)
	rights := Write
	if r.rights&Grant != 0 {
		rights |= Grant
	}
	cs := r.pd.cs
	cs.mu.Lock()
	c, ok := cs.allocLocked()
	if ok {
		cs.setLocked(c, slot{kind: KindReply, rights: rights, reply: s, gen: gen})
	}
	cs.mu.Unlock()
	if !ok {
		s.abortReply(gen, fmt.Errorf("kernel: call: %s has no free slot for the reply cap: %w", r.pd.name(), ErrAborted))
		return
	}
	r.info.Reply = c
}

// copyMsg copies label, words and payload from src to dst; the caps are
// the caller's business.
func copyMsg(dst, src *Msg, to *PD, verb string) error {
	dst.Label = src.Label
	dst.Words = src.Words
	n := copy(dst.Payload[:cap(dst.Payload)], src.Payload)
	dst.Payload = dst.Payload[:n]
	if n < len(src.Payload) {
		return fmt.Errorf("kernel: %s: %s: payload of %d bytes into a %d-byte buffer: %w", to.name(), verb, len(src.Payload), n, ErrTruncated)
	}
	return nil
}

// checkSend validates a message before it is sent.
func (pd *PD) checkSend(m *Msg, s *slot, c Cap, verb string) error {
	if len(m.Payload) > MaxPayload {
		return fmt.Errorf("kernel: %s: %s on cap %d: payload of %d bytes > MaxPayload: %w", pd.name(), verb, c, len(m.Payload), ErrTruncated)
	}
	if m.NCaps < 0 || m.NCaps > MaxCaps {
		return fmt.Errorf("kernel: %s: %s on cap %d: NCaps %d: %w", pd.name(), verb, c, m.NCaps, ErrInvalidCap)
	}
	if m.NCaps > 0 && s.rights&Grant != 0 {
		for _, x := range m.Caps[:m.NCaps] {
			if _, err := pd.cs.get(x, verb+" (transferred cap)"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Send sends m on ep (needs Write), blocking until a receiver takes it.
// Caps in m move to the receiver only if ep has Grant.
func (pd *PD) Send(ep Cap, m *Msg) error { return pd.send(nil, ep, m, true, "send") }

// SendCtx is Send that gives up when ctx is done (returning ctx.Err()
// wrapped); the message is then not delivered.
func (pd *PD) SendCtx(ctx context.Context, ep Cap, m *Msg) error {
	return pd.send(ctx, ep, m, true, "send")
}

// NBSend sends m only if a receiver is already waiting; otherwise the
// message is dropped and NBSend returns ErrWouldBlock (unwrapped).
func (pd *PD) NBSend(ep Cap, m *Msg) error { return pd.send(nil, ep, m, false, "nbsend") }

func (pd *PD) send(ctx context.Context, c Cap, m *Msg, block bool, verb string) error {
	s, err := pd.lookup(c, KindEndpoint, Write, verb)
	if err != nil {
		return err
	}
	if err := pd.checkSend(m, &s, c, verb); err != nil {
		return err
	}
	e := s.obj.(*endpoint)
	w := pd.getWaiter()
	defer pd.putWaiter(w)
	w.msg, w.badge, w.rights, w.call, w.err = m, s.badge, s.rights, false, nil
	w.ep.Store(e)
	e.mu.Lock()
	if pd.dead.Load() { // die() may have scanned before w.ep was set
		e.mu.Unlock()
		return pd.deadErr(verb)
	}
	if e.gone != nil { // the cap was deleted since the lookup
		e.mu.Unlock()
		return e.gone
	}
	if r := e.recvq.pop(); r != nil {
		e.deliver(w, r)
		e.mu.Unlock()
		r.wake()
		return nil
	}
	if !block {
		e.mu.Unlock()
		return ErrWouldBlock
	}
	e.sendq.push(w)
	e.mu.Unlock()
	if err := pd.waitQueued(ctx, e, &e.sendq, w, verb, c); err != nil {
		return err
	}
	return w.err
}

// Recv blocks until a message arrives on ep (needs Read) and copies it
// into m. RecvInfo carries the sender's badge and, for a Call, a reply cap.
// ErrTruncated (with the message delivered as far as it fit) if m.Payload
// was too small.
func (pd *PD) Recv(ep Cap, m *Msg) (RecvInfo, error) { return pd.recv(nil, ep, m, true, "recv") }

// RecvCtx is Recv that gives up when ctx is done.
func (pd *PD) RecvCtx(ctx context.Context, ep Cap, m *Msg) (RecvInfo, error) {
	return pd.recv(ctx, ep, m, true, "recv")
}

// NBRecv receives only if a sender is already waiting; otherwise
// ErrWouldBlock (unwrapped).
func (pd *PD) NBRecv(ep Cap, m *Msg) (RecvInfo, error) { return pd.recv(nil, ep, m, false, "nbrecv") }

func (pd *PD) recv(ctx context.Context, c Cap, m *Msg, block bool, verb string) (RecvInfo, error) {
	s, err := pd.lookup(c, KindEndpoint, Read, verb)
	if err != nil {
		return RecvInfo{}, err
	}
	e := s.obj.(*endpoint)
	w := pd.getWaiter()
	defer pd.putWaiter(w)
	w.msg, w.rights, w.err = m, s.rights, nil
	w.ep.Store(e)
	e.mu.Lock()
	if pd.dead.Load() { // die() may have scanned before w.ep was set
		e.mu.Unlock()
		return RecvInfo{}, pd.deadErr(verb)
	}
	if e.gone != nil {
		e.mu.Unlock()
		return RecvInfo{}, e.gone
	}
	if snd := e.sendq.pop(); snd != nil {
		e.deliver(snd, w)
		e.mu.Unlock()
		if !snd.call {
			snd.wake()
		}
		return w.info, w.err
	}
	if !block {
		e.mu.Unlock()
		return RecvInfo{}, ErrWouldBlock
	}
	e.recvq.push(w)
	e.mu.Unlock()
	if err := pd.waitQueued(ctx, e, &e.recvq, w, verb, c); err != nil {
		return RecvInfo{}, err
	}
	return w.info, w.err
}

// Call sends m on ep and blocks for the reply, which overwrites m (its
// Payload buffer is reused as the receive buffer, so give it capacity).
// It needs Write and GrantReply (or Grant) on ep. If the receiving
// component dies before replying, or deletes the reply cap, Call returns
// ErrAborted.
func (pd *PD) Call(ep Cap, m *Msg) error { return pd.call(nil, ep, m) }

// CallCtx is Call that gives up when ctx is done; a reply that arrives
// later is dropped (the server's Reply returns ErrAborted).
func (pd *PD) CallCtx(ctx context.Context, ep Cap, m *Msg) error { return pd.call(ctx, ep, m) }

func (pd *PD) call(ctx context.Context, c Cap, m *Msg) error {
	s, err := pd.lookup(c, KindEndpoint, Write, "call")
	if err != nil {
		return err
	}
	if s.rights&(GrantReply|Grant) == 0 {
		return fmt.Errorf("kernel: %s: call on cap %d: rights %s, need GrantReply or Grant: %w", pd.name(), c, s.rights, ErrRights)
	}
	if err := pd.checkSend(m, &s, c, "call"); err != nil {
		return err
	}
	e := s.obj.(*endpoint)
	w := pd.getWaiter()
	defer pd.putWaiter(w)
	w.msg, w.badge, w.rights, w.call, w.err = m, s.badge, s.rights, true, nil
	w.ep.Store(e)
	e.mu.Lock()
	if pd.dead.Load() { // die() may have scanned before w.ep was set
		e.mu.Unlock()
		return pd.deadErr("call")
	}
	if e.gone != nil {
		e.mu.Unlock()
		return e.gone
	}
	if r := e.recvq.pop(); r != nil {
		e.deliver(w, r)
		e.mu.Unlock()
		r.wake()
	} else {
		e.sendq.push(w)
		e.mu.Unlock()
	}
	if ctx == nil || ctx.Done() == nil {
		<-w.ch // the reply, or an abort (ours or the server's)
		return w.err
	}
	select {
	case <-w.ch:
		return w.err
	case <-ctx.Done():
	}
	// Interrupted: leave the queue, or abandon the reply, unless the
	// partner got there first.
	e.mu.Lock()
	if w.queued {
		e.sendq.remove(w)
		e.mu.Unlock()
		return pd.interruptErr(ctx, "call", c)
	}
	e.mu.Unlock()
	if st := w.st.Load(); st&3 == stAwaiting && w.st.CompareAndSwap(st, st&^3|stAbandoned) {
		err := pd.interruptErr(ctx, "call", c)
		w.callEnded(err)
		return err
	}
	<-w.ch
	return w.err
}

// waitQueued blocks a queued sender or receiver until its partner wakes
// it, or until ctx or the component is done.
func (pd *PD) waitQueued(ctx context.Context, e *endpoint, q *waitq, w *waiter, verb string, c Cap) error {
	if ctx == nil || ctx.Done() == nil {
		<-w.ch // the partner, or an abort (see PD.abortWaiters)
		return nil
	}
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	e.mu.Lock()
	if w.queued {
		q.remove(w)
		e.mu.Unlock()
		return pd.interruptErr(ctx, verb, c)
	}
	e.mu.Unlock()
	<-w.ch // the partner is delivering
	return nil
}

// interruptErr says why a blocked verb gave up.
func (pd *PD) interruptErr(ctx context.Context, verb string, c Cap) error {
	if pd.dead.Load() || pd.ctx.Err() != nil {
		return pd.deadErr(verb)
	}
	return fmt.Errorf("kernel: %s: %s on cap %d: %w", pd.name(), verb, c, ctx.Err())
}

// Reply answers the call that made the one-shot reply cap, and consumes
// the cap. The message is copied into the caller's Msg; caps move only if
// the reply cap has Grant (it does when the receiver's endpoint cap had
// Grant, as in seL4). ErrAborted if the caller is gone (died, gave up, or
// its call was aborted).
func (pd *PD) Reply(reply Cap, m *Msg) error {
	if pd.dead.Load() {
		return pd.deadErr("reply")
	}
	if len(m.Payload) > MaxPayload {
		return fmt.Errorf("kernel: %s: reply on cap %d: payload of %d bytes > MaxPayload: %w", pd.name(), reply, len(m.Payload), ErrTruncated)
	}
	if m.NCaps < 0 || m.NCaps > MaxCaps {
		return fmt.Errorf("kernel: %s: reply on cap %d: NCaps %d: %w", pd.name(), reply, m.NCaps, ErrInvalidCap)
	}
	cs := pd.cs
	cs.mu.Lock()
	s, err := cs.slotLocked(reply, "reply")
	if err == nil && s.kind != KindReply {
		err = fmt.Errorf("kernel: %s: reply on cap %d: a %s cap: %w", pd.name(), reply, s.kind, ErrInvalidCap)
	}
	if err != nil {
		cs.mu.Unlock()
		return err
	}
	w, gen, rights := s.reply, s.gen, s.rights
	cs.freeLocked(reply)
	cs.mu.Unlock()
	if !w.st.CompareAndSwap(gen<<2|stAwaiting, gen<<2|stDone) {
		return fmt.Errorf("kernel: %s: reply on cap %d: caller gone: %w", pd.name(), reply, ErrAborted)
	}
	dst := w.msg
	w.err = copyMsg(dst, m, w.pd, "call")
	dst.NCaps = 0
	if m.NCaps > 0 && rights&Grant != 0 {
		dst.NCaps = pd.k.moveCaps(cs, m.Caps[:m.NCaps], w.pd.cs, dst.Caps[:])
	}
	w.callEnded(errReplied)
	w.wake()
	return nil
}

// errReplied is the cause of a ReplyContext's cancellation once the call
// was answered.
var errReplied = errors.New("kernel: call answered")

// ReplyContext returns a context, derived from parent, that is cancelled
// when the caller of the call that made reply is gone: its CallCtx gave
// up, its component died or was restarted, the kernel stopped, or the
// reply cap was deleted (by this component's death too). It is also
// cancelled once the call is answered (Reply consumes the cap), and at
// once if reply does not name a reply cap awaiting its caller (the caller
// already gave up, or the cap was used). context.Cause tells why (an
// ErrAborted or ErrInvalidCap error, or the caller's interruption). A
// handler passes it to the work it does for the call, so that a caller
// that gave up does not keep the work going; call the CancelFunc when
// done. It allocates (a context and a small record); plain Call and
// ReplyRecv do not.
func (pd *PD) ReplyContext(parent context.Context, reply Cap) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := func() { cancel(context.Canceled) }
	if pd.dead.Load() {
		cancel(pd.deadErr("reply context"))
		return ctx, stop
	}
	cs := pd.cs
	cs.mu.Lock()
	s, err := cs.slotLocked(reply, "reply context")
	if err == nil && s.kind != KindReply {
		err = fmt.Errorf("kernel: %s: reply context on cap %d: a %s cap: %w", pd.name(), reply, s.kind, ErrInvalidCap)
	}
	if err != nil {
		cs.mu.Unlock()
		cancel(err)
		return ctx, stop
	}
	w, gen := s.reply, s.gen
	cs.mu.Unlock()
	x := &replyWatch{cancel: cancel}
	for {
		x.next = w.watch.Load()
		if w.watch.CompareAndSwap(x.next, x) {
			break
		}
	}
	// The call may have ended before the watch was in place: then nobody
	// will sweep it for this call (a later sweep just cancels it again).
	if w.st.Load() != gen<<2|stAwaiting {
		cancel(fmt.Errorf("kernel: %s: reply context on cap %d: caller gone: %w", pd.name(), reply, ErrAborted))
	}
	return ctx, stop
}

// ReplyRecv replies on reply (if non-zero) with r, then receives on ep
// into m: the server loop in one verb. A caller that is gone is not an
// error (the reply is dropped, as in seL4); other reply errors are
// returned without receiving.
func (pd *PD) ReplyRecv(ep Cap, reply Cap, r *Msg, m *Msg) (RecvInfo, error) {
	if reply != 0 {
		if err := pd.Reply(reply, r); err != nil && !isAborted(err) {
			return RecvInfo{}, err
		}
	}
	return pd.recv(nil, ep, m, true, "recv")
}

// ReplyRecvCtx is ReplyRecv whose receive gives up when ctx is done.
func (pd *PD) ReplyRecvCtx(ctx context.Context, ep Cap, reply Cap, r *Msg, m *Msg) (RecvInfo, error) {
	if reply != 0 {
		if err := pd.Reply(reply, r); err != nil && !isAborted(err) {
			return RecvInfo{}, err
		}
	}
	return pd.recv(ctx, ep, m, true, "recv")
}

// abortSenders fails every queued sender and caller with err.
func (e *endpoint) abortSenders(err error) {
	e.mu.Lock()
	q := e.takeSendersLocked(nil)
	e.mu.Unlock()
	abortAll(q, err)
}

// takeSendersLocked empties the send queue into q; queued callers are put
// in the reply phase so that abortAll fails them like a dead server would.
func (e *endpoint) takeSendersLocked(q []*waiter) []*waiter {
	for w := e.sendq.pop(); w != nil; w = e.sendq.pop() {
		if w.call {
			w.st.Store((w.st.Load()>>2+1)<<2 | stAwaiting)
		}
		q = append(q, w)
	}
	return q
}

// abortAll wakes the waiters taken off an endpoint's queues with err.
func abortAll(q []*waiter, err error) {
	for _, w := range q {
		if w.call {
			w.abortReply(w.st.Load()>>2, err)
			continue
		}
		w.err = err
		w.wake()
	}
}

// destroy cancels every send, call and receive queued on e with err and
// makes later ones (through caps looked up before the last was deleted)
// fail with it. Calls already answered by a receiver keep their reply cap.
func (e *endpoint) destroy(err error) {
	e.mu.Lock()
	e.gone = err
	q := e.takeSendersLocked(nil)
	for w := e.recvq.pop(); w != nil; w = e.recvq.pop() {
		q = append(q, w)
	}
	e.mu.Unlock()
	abortAll(q, err)
}

// abortWaiters wakes every blocked endpoint verb of the (dead) incarnation
// with err: queued ones leave their queue, calls awaiting a reply are
// aborted. Blocking verbs check pd.dead under the endpoint lock after
// publishing w.ep, so none can block after this scan.
func (pd *PD) abortWaiters(err error) {
	pd.wmu.Lock()
	all := append([]*waiter(nil), pd.wall...)
	pd.wmu.Unlock()
	for _, w := range all {
		e := w.ep.Load()
		if e == nil {
			continue
		}
		e.mu.Lock()
		if w.queued && w.ep.Load() == e {
			w.q.remove(w)
			e.mu.Unlock()
			w.err = err
			w.wake()
			continue
		}
		e.mu.Unlock()
		if st := w.st.Load(); st&3 == stAwaiting {
			w.abortReply(st>>2, err)
		}
	}
}
