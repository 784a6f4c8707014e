// Package unicast is the unicast IPC process: the composition root of a
// unicast layer member, wiring enrollment (enroll), the connection manager
// (connmgr), data transfer (dt), forwarding (pff), link-state routing
// (routing), address assignment (addr), congestion avoidance (ca), the
// flow allocator (fa) and a directory policy (Directory). It obtains its
// N-1 flows through a flow.Broker exactly as an application does, so it
// runs over a shim or over another unicast layer alike. It is not the
// IRM and it keeps no package-level state: one process may hold many.
package unicast
