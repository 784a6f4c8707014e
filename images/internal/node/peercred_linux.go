package node

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/ouronet/ouro/flow"
)

// Who may use the node socket, and as what (docs/node.md):
//
//   - root, the node's own user and members of [node] socket_group get
//     the management role: their sessions may change the node;
//   - with [node] socket_public, every other local user gets the
//     application role (flows and names, read-only management);
//   - nobody else: the socket file is mode 0660 (0666 if public), owned
//     by the node's user and the socket group, and the gateway refuses
//     a peer its credentials do not admit even if the file lets it in.

// socketAccess is the node socket's access policy.
type socketAccess struct {
	self   uint32 // the node's effective uid
	gid    int    // the socket group (-1: none)
	public bool
}

func newSocketAccess(o GatewayOptions) (socketAccess, error) {
	a := socketAccess{self: uint32(os.Geteuid()), gid: -1, public: o.Public}
	if o.Group == "" {
		return a, nil
	}
	if n, err := strconv.Atoi(o.Group); err == nil && n >= 0 {
		a.gid = n
		return a, nil
	}
	g, err := user.LookupGroup(o.Group)
	if err != nil {
		return a, fmt.Errorf("socket_group %q: %w: %w", o.Group, flow.ErrInvalid, err)
	}
	if a.gid, err = strconv.Atoi(g.Gid); err != nil {
		return a, fmt.Errorf("socket_group %q: gid %q: %w", o.Group, g.Gid, flow.ErrInvalid)
	}
	return a, nil
}

// mode is the socket file's mode.
func (a socketAccess) mode() os.FileMode {
	if a.public {
		return 0o666
	}
	return 0o660
}

// role says whether a peer with cred may connect (ok) and whether it gets
// the management role.
func (a socketAccess) role(c peerCreds) (mgmt, ok bool) {
	if c.uid == 0 || c.uid == a.self {
		return true, true
	}
	if a.gid >= 0 && (c.gid == uint32(a.gid) || slices.Contains(c.groups, uint32(a.gid))) {
		return true, true
	}
	return false, a.public
}

// peerCreds is who is at the other end of a Unix socket, as the kernel
// recorded it when the peer connected.
type peerCreds struct {
	pid      int32
	uid, gid uint32
	groups   []uint32 // supplementary groups (SO_PEERGROUPS), when the kernel tells
}

// soPeerGroups is SO_PEERGROUPS (Linux 4.13), missing from package syscall.
const soPeerGroups = 59

// peerCred returns c's peer credentials (SO_PEERCRED, SO_PEERGROUPS).
func peerCred(c *net.UnixConn) (peerCreds, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peerCreds{}, err
	}
	var (
		cred  *syscall.Ucred
		cerr  error
		pc    peerCreds
		gbuf  [256 * 4]byte
		glen  = uint32(len(gbuf))
		gerr  syscall.Errno
		ctlFn = func(fd uintptr) {
			cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
			_, _, gerr = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, soPeerGroups,
				uintptr(unsafe.Pointer(&gbuf[0])), uintptr(unsafe.Pointer(&glen)), 0)
		}
	)
	if err := raw.Control(ctlFn); err != nil {
		return peerCreds{}, err
	}
	if cerr != nil {
		return peerCreds{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	pc.pid, pc.uid, pc.gid = cred.Pid, cred.Uid, cred.Gid
	if gerr == 0 {
		for i := 0; i+4 <= int(glen) && i+4 <= len(gbuf); i += 4 {
			pc.groups = append(pc.groups, binary.NativeEndian.Uint32(gbuf[i:]))
		}
	}
	return pc, nil
}

// listenSocket listens on a Unix SOCK_SEQPACKET socket at path with mode
// and group gid (-1: the default), with no moment at which the socket is
// reachable with looser permissions: it is bound in a fresh directory
// only this process can enter (0700), given its mode and group there,
// and then renamed to path.
func listenSocket(path string, mode os.FileMode, gid int) (*net.UnixListener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".ouro-sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: p, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false) // the name is path now; the node removes it
	fail := func(err error) (*net.UnixListener, error) {
		l.Close()
		return nil, err
	}
	if gid >= 0 {
		if err := os.Lchown(p, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(p, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(p, path); err != nil {
		return fail(err)
	}
	return l, nil
}
