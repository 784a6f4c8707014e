//go:build tamago && amd64

package microvm

// defined in port_amd64.s
func inb(port uint16) uint8
func outb(port uint16, val uint8)
func outw(port uint16, val uint16)
func outl(port uint16, val uint32)
func rdtsc() uint64
func rdrand64() (v uint64, ok bool)
func rdseed64() (v uint64, ok bool)
func haltForever()
func mmioRead32(addr uint32) uint32
func mmioWrite32(addr uint32, val uint32)
