// Package faultinject is a test-only fault hook on receive paths: built
// with the tag faultinject, Check panics when a packet carries Poison, so
// that a test can make any component's receive goroutine fault on demand
// (a datagram from another process, a frame under QEMU). Without the tag
// Check is an empty function that the compiler removes; nothing else of
// the package exists at run time. It is not a fuzzer and not a defence.
package faultinject

// Poison is the 16-byte magic that makes Check panic (with the tag
// faultinject) wherever it occurs in a packet.
const Poison = "\xf0\x0d\xfa\x17ouro-poison!"
