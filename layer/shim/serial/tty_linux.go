package serial

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ouronet/ouro/flow"
)

// OpenTTY opens a serial device (a UART such as /dev/ttyUSB0, or a pty's
// slave) in raw mode, 8N1, no flow control, at baud bits per second (0:
// keep the device's speed). The file goes through the Go poller, so Close
// unblocks a Read and read deadlines work.
func OpenTTY(path string, baud int) (*os.File, error) {
	speed, err := speedOf(baud)
	if err != nil {
		return nil, fmt.Errorf("serial: open %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	if err := control(f, func(fd int) error { return makeRaw(fd, speed) }); err != nil {
		f.Close()
		return nil, fmt.Errorf("serial: %s: raw mode: %w", path, err)
	}
	return f, nil
}

// OpenPTY creates a pseudo-terminal pair: it returns the master, in raw
// mode, and the slave's path, to be opened with OpenTTY (by this process or
// another, such as QEMU with -serial /dev/pts/N).
func OpenPTY() (master *os.File, slave string, err error) {
	f, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, "", fmt.Errorf("serial: pty: %w", err)
	}
	var n uint32
	err = control(f, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
			return err
		}
		var err error
		if n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN); err != nil { // ptsname
			return err
		}
		return makeRaw(fd, 0)
	})
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("serial: pty: %w", err)
	}
	return f, fmt.Sprintf("/dev/pts/%d", n), nil
}

// control runs fn on f's descriptor without taking it out of the poller
// (os.File.Fd would make it blocking).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// makeRaw is cfmakeraw(3) plus 8N1, CLOCAL, no hardware flow control and,
// if speed is not 0, the line speed.
func makeRaw(fd int, speed uint32) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CRTSCTS
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if speed != 0 {
		t.Cflag = t.Cflag&^unix.CBAUD | speed
		t.Ispeed, t.Ospeed = speed, speed
	}
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// speedOf maps a baud rate to its termios constant (termios(3)).
func speedOf(baud int) (uint32, error) {
	switch baud {
	case 0:
		return 0, nil
	case 9600:
		return unix.B9600, nil
	case 19200:
		return unix.B19200, nil
	case 38400:
		return unix.B38400, nil
	case 57600:
		return unix.B57600, nil
	case 115200:
		return unix.B115200, nil
	case 230400:
		return unix.B230400, nil
	case 460800:
		return unix.B460800, nil
	case 921600:
		return unix.B921600, nil
	case 1000000:
		return unix.B1000000, nil
	case 1500000:
		return unix.B1500000, nil
	case 2000000:
		return unix.B2000000, nil
	case 3000000:
		return unix.B3000000, nil
	case 4000000:
		return unix.B4000000, nil
	}
	return 0, fmt.Errorf("baud rate %d not supported: %w", baud, flow.ErrInvalid)
}
