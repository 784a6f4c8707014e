package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

// The uid and gid the peer subprocess runs as ("nobody" on Debian).
const peerUID, peerGID = 65534, 65534

// peerResult is what the peer subprocess reports.
type peerResult struct {
	Dial   string `json:"dial"`   // "" or the error
	Bind   string `json:"bind"`   // the error of Bind, "" if it worked
	IPCPs  string `json:"ipcps"`  // of read-only management
	Reg    string `json:"reg"`    // of state-changing management
	Create string `json:"create"` // of creating an IPCP
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPeerHelper is the peer subprocess of TestSocketCredentials: it does
// nothing unless started by it.
func TestPeerHelper(t *testing.T) {
	sock := os.Getenv("OURO_PEER_SOCKET")
	if sock == "" {
		t.Skip("only a subprocess of TestSocketCredentials runs it")
	}
	var r peerResult
	defer func() { json.NewEncoder(os.Stdout).Encode(r) }()
	b, err := flow.Dial(sock)
	if r.Dial = errText(err); err != nil {
		return
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.Bind = errText(b.Bind(ctx, fmt.Sprintf("peer-%d", os.Getpid())))
	r.IPCPs = errText(b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs}, nil))
	r.Reg = errText(b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: "peer-reg"}, nil))
	r.Create = errText(b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "peer.local", Layer: "peer",
		Args: map[string]string{"kind": "local"}}, nil))
}

// runPeer runs TestPeerHelper as uid/gid peerUID/peerGID against sock.
func runPeer(t *testing.T, bin, sock string) peerResult {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^TestPeerHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OURO_PEER_SOCKET="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: peerUID, Gid: peerGID, Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("peer: %v (output %q)", err, out)
	}
	var r peerResult
	line, _, _ := strings.Cut(string(out), "\n")
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("peer output %q: %v", out, err)
	}
	return r
}

// TestSocketCredentials connects to the node socket as root (this test)
// and as another user (a subprocess of the test binary run as nobody):
// the socket's mode keeps others out unless socket_public is set, then
// they get the application role (flows, names, read-only management);
// members of socket_group get the management role.
func TestSocketCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root to run a peer as another uid (syscall.Credential)")
	}
	// A copy of the test binary and the sockets where nobody may reach
	// them: the build directory is private.
	dir, err := os.MkdirTemp("", "ouro-peercred")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "node.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		node string // [node] keys
		mode os.FileMode
		want peerResult // "" fields must be "", "x" fields must be errors
		why  error      // what the refused management errors wrap
	}{
		{"default", ``, 0o660, peerResult{Dial: "x"}, nil},
		{"public", `socket_public = true`, 0o666, peerResult{Reg: "x", Create: "x"}, kernel.ErrRights},
		{"group", fmt.Sprintf(`socket_group = "%d"`, peerGID), 0o660, peerResult{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(dir, tc.name+".sock")
			cfg, err := ParseConfig([]byte(fmt.Sprintf("[node]\nname = \"n\"\n%s\n[[ipcp]]\nkind = \"local\"\n", tc.node)))
			if err != nil {
				t.Fatal(err)
			}
			n, err := New(cfg, GatewayWith(sock, cfg.GatewayOptions(), logx.Test(t)))
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Start(); err != nil {
				t.Fatal(err)
			}
			defer n.Stop()
			st, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.mode {
				t.Errorf("socket mode %v, want %v", st.Mode().Perm(), tc.mode)
			}
			got := runPeer(t, bin, sock)
			check := func(field, got, want string) {
				if (got != "") != (want != "") {
					t.Errorf("%s as uid %d: %q, want %s", field, peerUID, got, map[bool]string{true: "an error", false: "success"}[want != ""])
				}
			}
			check("dial", got.Dial, tc.want.Dial)
			if got.Dial != "" {
				if !strings.Contains(got.Dial, "permission denied") {
					t.Errorf("dial: %q, want permission denied", got.Dial)
				}
				return
			}
			check("bind", got.Bind, tc.want.Bind)
			check("ipcps", got.IPCPs, tc.want.IPCPs)
			check("reg", got.Reg, tc.want.Reg)
			check("create", got.Create, tc.want.Create)
			if tc.why != nil && got.Reg != "" && !strings.Contains(got.Reg, tc.why.Error()) {
				t.Errorf("reg: %q, want %v", got.Reg, tc.why)
			}
			// Root always manages.
			b, err := flow.Dial(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: "root-reg"}, nil); err != nil {
				t.Errorf("reg as root: %v", err)
			}
		})
	}
}

// TestSocketCredentialsInCode checks the gateway's own check, behind the
// file mode: a peer the policy does not admit is refused even when the
// file lets it connect.
func TestSocketCredentialsInCode(t *testing.T) {
	a := socketAccess{self: 1000, gid: 50}
	for _, tc := range []struct {
		c        peerCreds
		public   bool
		mgmt, ok bool
	}{
		{peerCreds{uid: 0}, false, true, true},
		{peerCreds{uid: 1000, gid: 1000}, false, true, true},
		{peerCreds{uid: 1001, gid: 50}, false, true, true},
		{peerCreds{uid: 1001, gid: 1001, groups: []uint32{7, 50}}, false, true, true},
		{peerCreds{uid: 1001, gid: 1001}, false, false, false},
		{peerCreds{uid: 1001, gid: 1001}, true, false, true},
	} {
		a.public = tc.public
		if mgmt, ok := a.role(tc.c); mgmt != tc.mgmt || ok != tc.ok {
			t.Errorf("%+v public=%v: mgmt %v ok %v, want %v %v", tc.c, tc.public, mgmt, ok, tc.mgmt, tc.ok)
		}
	}
}

// TestSocketNoWindow watches the socket's path while the node creates it:
// the socket never appears with a mode other than its final one.
func TestSocketNoWindow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	stop := make(chan struct{})
	seen := make(chan os.FileMode, 1)
	go func() {
		defer close(seen)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st, err := os.Lstat(path); err == nil && st.Mode().Perm() != 0o660 {
				seen <- st.Mode().Perm()
				return
			}
		}
	}()
	for i := 0; i < 200; i++ {
		l, err := listenSocket(path, 0o660, -1)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		os.Remove(path)
	}
	close(stop)
	if m, ok := <-seen; ok {
		t.Fatalf("the socket was visible with mode %v before its final 0660", m)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
