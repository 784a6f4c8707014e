package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

const localNode = "[node]\nname = %q\n[[ipcp]]\nkind = \"local\"\n"

// TestSecondNodeRefused starts a node on a socket, then a second on the
// same socket: the second must be refused, naming the first (this
// process), and the first must keep serving on it.
func TestSecondNodeRefused(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "node.sock")
	startNode(t, fmt.Sprintf(localNode, "first"), Gateway(sock, logx.Test(t)))

	c, err := ParseConfig(fmt.Appendf(nil, localNode, "second"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := New(c, Gateway(sock, logx.Test(t)))
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start()
	if err == nil {
		second.Stop()
		t.Fatal("a second node started on a live node's socket")
	}
	second.Stop()
	want := fmt.Sprintf("%s is served by a running node (pid %d: ", sock, os.Getpid())
	if !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second node: %v\nwant ErrSocketInUse and %q", err, want)
	}

	// The first still serves its programs on the socket.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := flow.Dial(sock)
	if err != nil {
		t.Fatalf("the first node's socket after the refusal: %v", err)
	}
	defer b.Close()
	var resp ipcp.MgmtResp
	if err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs}, &resp); err != nil || len(resp.Table.Rows) != 1 || resp.Table.Rows[0][0] != "first.local" {
		t.Fatalf("ipcps from the first node: %+v, %v", resp.Table, err)
	}
}

// TestStaleSocketRemoved: a socket nobody listens on (a node that died)
// is replaced; a file that is not a socket is not.
func TestStaleSocketRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: stale, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the stale socket is gone before the test: %v", err)
	}
	startNode(t, fmt.Sprintf(localNode, "a"), Gateway(stale, logx.Test(t)))
	b, err := flow.Dial(stale)
	if err != nil {
		t.Fatalf("node on a stale socket: %v", err)
	}
	b.Close()

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = claimSocket(file)
	if !errors.Is(err, flow.ErrExists) || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("claimSocket of a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Fatalf("the file was touched: %q", b)
	}
}

// TestDefaultSocket checks the default path: $OURO_SOCKET, else the
// user's runtime directory, and that programs (flow.SocketPath) find the
// same path the node takes.
func TestDefaultSocket(t *testing.T) {
	t.Setenv("OURO_SOCKET", "/somewhere/node.sock")
	if p, err := DefaultSocket(); err != nil || p != "/somewhere/node.sock" {
		t.Fatalf("with OURO_SOCKET: %q, %v", p, err)
	}
	t.Setenv("OURO_SOCKET", "")
	os.Unsetenv("OURO_SOCKET")
	run := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", run)
	p, err := DefaultSocket()
	if want := filepath.Join(run, "ouro", "node.sock"); err != nil || p != want {
		t.Fatalf("DefaultSocket = %q, %v; want %q", p, err, want)
	}
	startNode(t, fmt.Sprintf(localNode, "a"), Gateway(p, logx.Test(t)))
	if got := flow.SocketPath(); got != p {
		t.Fatalf("flow.SocketPath() = %q, want the node's %q", got, p)
	}
}

// TestSharedTempDirChecked: a directory under the shared temporary
// directory that others may write to (or that is someone else's) is not
// used for the socket.
func TestSharedTempDirChecked(t *testing.T) {
	mine := filepath.Join(os.TempDir(), fmt.Sprintf("ouro-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	t.Cleanup(func() { os.RemoveAll(mine) })
	if err := usableDir(mine); err != nil {
		t.Fatalf("a new directory of this user's: %v", err)
	}
	if err := os.Chmod(mine, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := usableDir(mine); err == nil {
		t.Fatal("a world-writable directory under the temporary directory was accepted")
	}
}
