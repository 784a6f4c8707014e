// Package kernel is the node's capability IPC runtime, modelled on seL4: components act only through capabilities to endpoints, notifications and rings; it is not an OS kernel and gives no memory isolation beyond Go's type safety.
//
// See docs/kernel.md for the model, every verb, the rights table, fault and
// budget semantics, and where this differs from seL4.
package kernel
