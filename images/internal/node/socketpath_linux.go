package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ouronet/ouro/flow"
)

// The node socket's place and ownership (hosted): which path a node takes
// by default, and whether a socket found there is another live node's (a
// second node must not take it over) or a stale one (removed).

// DefaultSocket returns the socket a node listens on when neither the
// command line nor the configuration name one: $OURO_SOCKET if set, else
// the first of flow.SocketCandidates whose directory this user can use
// ($XDG_RUNTIME_DIR/ouro, /run/ouro for root, /tmp/ouro-<uid>). The
// directory is created if needed.
func DefaultSocket() (string, error) {
	if p := os.Getenv("OURO_SOCKET"); p != "" {
		return p, nil
	}
	var tried []string
	for _, p := range flow.SocketCandidates() {
		err := usableDir(filepath.Dir(p))
		if err == nil {
			return p, nil
		}
		tried = append(tried, err.Error())
	}
	return "", fmt.Errorf("no usable directory for the node socket (%s): set -socket, [node] socket or $OURO_SOCKET: %w",
		strings.Join(tried, "; "), flow.ErrNotFound)
}

// usableDir creates dir if needed and checks that this user may create a
// socket in it. A directory of its own under the shared temporary
// directory must be this user's and closed to others, or anyone could
// put a socket there first.
func usableDir(dir string) error {
	shared := strings.HasPrefix(dir, os.TempDir()+string(filepath.Separator))
	mode := os.FileMode(0o750)
	if shared {
		mode = 0o700
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	if shared {
		st, err := os.Lstat(dir)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !st.IsDir() || !ok || int(sys.Uid) != os.Geteuid() || st.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("%s: not a directory of this user's only (uid %d, mode 0700)", dir, os.Geteuid())
		}
	}
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// ErrSocketInUse is the error of claimSocket when a live node serves the
// socket.
var ErrSocketInUse = errors.New("socket in use")

// claimSocket prepares path for a node to listen on: it creates the
// directory, refuses a socket that a live node serves (naming its pid and
// command line when the kernel says who it is) and anything that is not
// a socket, and removes a stale socket that nobody listens on.
func claimSocket(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: not replacing it: %w", path, flow.ErrExists)
	}
	c, err := net.DialTimeout("unixpacket", path, time.Second)
	if err == nil {
		who := socketPeer(c.(*net.UnixConn))
		c.Close()
		return fmt.Errorf("%s is served by a running node%s; stop it, or give this node another socket (-socket, [node] socket or $OURO_SOCKET): %w",
			path, who, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether a node serves it: %w", path, err)
	}
	// Nobody listens: a node that ended without removing it.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// socketPeer describes the process at the other end of c: " (pid N: cmd
// args)", or "" if the kernel does not say.
func socketPeer(c *net.UnixConn) string {
	raw, err := c.SyscallConn()
	if err != nil {
		return ""
	}
	var cred *syscall.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil || cred == nil || cred.Pid == 0 {
		return ""
	}
	who := " (pid " + strconv.Itoa(int(cred.Pid))
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cred.Pid)); err == nil && len(b) > 0 {
		cmd := strings.Join(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), " ")
		if len(cmd) > 120 {
			cmd = cmd[:117] + "..."
		}
		who += ": " + cmd
	}
	return who + ")"
}
