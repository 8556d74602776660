package gittest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSH is an SSH endpoint serving the same repositories as the HTTP server: it
// accepts one client key and runs git-upload-pack for exec requests, as a git
// host's sshd does.
type SSH struct {
	Addr           string // 127.0.0.1:port
	KeyFile        string // the accepted client's private key (OpenSSH format)
	KnownHostsFile string // a known_hosts line for the server's host key
	// OtherKeyFile is a valid key the server does not accept.
	OtherKeyFile string
}

// StartSSH starts the SSH endpoint; it stops at test cleanup.
func (s *Server) StartSSH(t testing.TB) *SSH {
	t.Helper()
	dir := t.TempDir()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	writeKey := func(name string) ssh.PublicKey {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		sshPub, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return sshPub
	}
	clientPub := writeKey("id_ed25519")
	writeKey("other_ed25519")

	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(clientPub.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveSSH(conn, cfg)
		}
	}()
	addr := ln.Addr().String()
	kh := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostSigner.PublicKey())
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &SSH{Addr: addr, KeyFile: filepath.Join(dir, "id_ed25519"), KnownHostsFile: kh, OtherKeyFile: filepath.Join(dir, "other_ed25519")}
}

func (s *Server) serveSSH(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		s.recordLine("SSH handshake failed")
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.serveSession(ch, chReqs)
	}
}

func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(req.Type == "env", nil) // GIT_PROTOCOL and friends: accepted, ignored
			continue
		}
		// Payload: uint32 length + command, e.g. git-upload-pack '/app.git'.
		if len(req.Payload) < 4 {
			req.Reply(false, nil)
			return
		}
		n := binary.BigEndian.Uint32(req.Payload)
		command := string(req.Payload[4 : 4+n])
		verb, arg, _ := strings.Cut(command, " ")
		repo := strings.Trim(arg, "'")
		if verb != "git-upload-pack" || strings.Contains(repo, "..") {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		s.recordLine("SSH " + verb + " " + repo)
		cmd := exec.Command("git", "upload-pack", filepath.Join(s.Root, filepath.FromSlash(repo)))
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+s.Root)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
			if ee, ok := err.(*exec.ExitError); ok {
				status = uint32(ee.ExitCode())
			}
		}
		ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
		return
	}
}

func (s *Server) recordLine(line string) {
	s.mu.Lock()
	s.requests = append(s.requests, line)
	s.mu.Unlock()
}
