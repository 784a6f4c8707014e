// Package ecm is the hardware-independent half of a USB CDC-ECM Ethernet
// gadget: the descriptor set as bytes, the framing rules between Ethernet
// frames and USB bulk transfers, the host and device MAC addresses, the
// notifications, and a bounded frame queue. It is not a USB stack and
// touches no hardware: board/usbarmory (ecm_tamago.go) feeds these to
// TamaGo's i.MX6 USB device driver.
//
// Specifications cited:
//   - USB 2.0: Universal Serial Bus Specification, Revision 2.0, chapter 9.
//   - CDC 1.2: USB Class Definitions for Communications Devices, Revision 1.2.
//   - ECM 1.2: USB Communications Class Subclass Specification for Ethernet
//     Control Model Devices, Revision 1.2 (ECM120.pdf).
package ecm
