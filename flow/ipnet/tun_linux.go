package ipnet

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TUN is a Linux TUN interface without packet information: one IP packet
// per Read and Write. Close unblocks a Read.
type TUN struct {
	*os.File
	Name string // the interface's name as the kernel gave it
}

// OpenTUN creates (or attaches to) the TUN interface name, sets its MTU
// and brings it up. It needs CAP_NET_ADMIN. Addresses are the
// caller's to add (ip addr add ... dev NAME).
func OpenTUN(name string, mtu int) (*TUN, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("ipnet: /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ipnet: tun %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ipnet: create tun %q (needs CAP_NET_ADMIN): %w", name, err)
	}
	t := &TUN{File: os.NewFile(uintptr(fd), "/dev/net/tun"), Name: ifr.Name()}
	if err := setLink(t.Name, mtu); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// setLink sets the interface's MTU and brings it up.
func setLink(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ipnet: %s: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if mtu > 0 {
		ifr.SetUint32(uint32(mtu))
		if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
			return fmt.Errorf("ipnet: %s: mtu %d: %w", name, mtu, err)
		}
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("ipnet: %s: flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("ipnet: %s: up: %w", name, err)
	}
	return nil
}
