// Package shim holds what the shim IPCPs share: their counters, flow
// listings and (local, diode, carrier) registered names. The shims
// themselves are its subpackages.
package shim

import "github.com/ouronet/ouro/flow"

// Stats are a shim IPCP's always-on counters, as a snapshot. Data counters
// count SDUs (payload bytes, without shim headers); control counters count
// control messages. Drops are never errors upward: they are counted here.
type Stats struct {
	PacketsIn  uint64 `cbor:"1,keyasint" json:"packets_in"`  // SDUs delivered to a flow
	BytesIn    uint64 `cbor:"2,keyasint" json:"bytes_in"`    // their payload bytes
	PacketsOut uint64 `cbor:"3,keyasint" json:"packets_out"` // SDUs sent
	BytesOut   uint64 `cbor:"4,keyasint" json:"bytes_out"`   // their payload bytes
	CtlIn      uint64 `cbor:"5,keyasint" json:"ctl_in"`      // control messages received and understood
	CtlOut     uint64 `cbor:"6,keyasint" json:"ctl_out"`     // control messages sent

	Drops Drops `cbor:"7,keyasint" json:"drops"`

	FlowsOut     uint64 `cbor:"8,keyasint" json:"flows_out"`      // flows allocated by this side
	FlowsIn      uint64 `cbor:"9,keyasint" json:"flows_in"`       // flows accepted from peers
	FlowsActive  uint64 `cbor:"10,keyasint" json:"flows_active"`  // flows now open
	AllocRetries uint64 `cbor:"11,keyasint" json:"alloc_retries"` // retransmitted alloc requests and name queries
	AllocFailed  uint64 `cbor:"12,keyasint" json:"alloc_failed"`  // allocations that ended in an error
	FlowsExpired uint64 `cbor:"13,keyasint" json:"flows_expired"` // flows deallocated because they were idle
	// Name announcements (Ethernet): sent, heard from others, and name
	// queries answered "not here" early because nobody announced it.
	NamesAnnounced uint64 `cbor:"14,keyasint" json:"names_announced"`
	NamesHeard     uint64 `cbor:"15,keyasint" json:"names_heard"`
	QuickNotFound  uint64 `cbor:"16,keyasint" json:"quick_not_found"`
	KexFailed      uint64 `cbor:"17,keyasint" json:"kex_failed"`     // sealed allocations whose key exchange failed or was refused (either side)
	SealResumed    uint64 `cbor:"18,keyasint" json:"seal_resumed"`   // sealed allocations accepted here resumed from a ticket
	SealNoTicket   uint64 `cbor:"19,keyasint" json:"seal_no_ticket"` // resumptions answered "no ticket" here (unknown, used, expired: the full exchange follows)
	RxStalls       uint64 `cbor:"20,keyasint" json:"rx_stalls"`      // deliveries whose wait for room in a full port ran out: its reader stopped, and its SDUs are dropped at once until it takes a delivery again
}

// Drops counts packets the shim dropped, by reason.
type Drops struct {
	Malformed   uint64 `cbor:"1,keyasint" json:"malformed"`    // header or control message invalid, SDU too long
	NotForUs    uint64 `cbor:"2,keyasint" json:"not_for_us"`   // eth: frame for another MAC, our own frame, wrong EtherType
	UnknownFlow uint64 `cbor:"3,keyasint" json:"unknown_flow"` // data for an endpoint id we do not have
	Pending     uint64 `cbor:"4,keyasint" json:"pending"`      // data for a flow whose allocation is not complete
	WrongPeer   uint64 `cbor:"5,keyasint" json:"wrong_peer"`   // data for a flow from another address than its peer's
	RxFull      uint64 `cbor:"6,keyasint" json:"rx_full"`      // the flow's port was full (the reader is slow)
	Truncated   uint64 `cbor:"7,keyasint" json:"truncated"`    // an SDU from a port was longer than the shim carries
	TxError     uint64 `cbor:"8,keyasint" json:"tx_error"`     // the device refused a packet
	RxError     uint64 `cbor:"9,keyasint" json:"rx_error"`     // the device reported a receive error
	Busy        uint64 `cbor:"10,keyasint" json:"busy"`        // alloc requests refused because too many were in progress
	PeerLimit   uint64 `cbor:"11,keyasint" json:"peer_limit"`  // alloc requests refused because the peer holds its share of flows or requests in progress
	Tampered    uint64 `cbor:"12,keyasint" json:"tampered"`    // sealed flows: SDUs that failed authentication (forged, damaged, cut)
	Replayed    uint64 `cbor:"13,keyasint" json:"replayed"`    // sealed flows: SDUs seen before or too old
	// SocketOverflow: datagrams the kernel dropped at the shim's socket
	// before the shim read them, its receive buffer full (udp on Linux:
	// SO_MEMINFO's drop count). Key 14: 12 and 13 are the sealed flows'.
	SocketOverflow uint64 `cbor:"14,keyasint" json:"socket_overflow"`
}

// FlowInfo describes one open flow of a shim, for the management tool.
type FlowInfo struct {
	LocalEID   uint64   `cbor:"1,keyasint" json:"local_eid"`  // this side's endpoint id
	RemoteEID  uint64   `cbor:"2,keyasint" json:"remote_eid"` // the peer's endpoint id (local shim: 0)
	Peer       string   `cbor:"3,keyasint" json:"peer"`       // the peer's address (UDP address, MAC)
	Name       string   `cbor:"4,keyasint" json:"name"`       // the allocated name (outgoing) or the accepting name (incoming)
	Outgoing   bool     `cbor:"5,keyasint" json:"outgoing"`   // allocated by this side
	QoS        flow.QoS `cbor:"6,keyasint" json:"qos"`
	PacketsIn  uint64   `cbor:"7,keyasint" json:"packets_in"`
	BytesIn    uint64   `cbor:"8,keyasint" json:"bytes_in"`
	PacketsOut uint64   `cbor:"9,keyasint" json:"packets_out"`
	BytesOut   uint64   `cbor:"10,keyasint" json:"bytes_out"`
}
