package netrc

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSet(t *testing.T) {
	t.Parallel()
	const host = "proxy.corp.example:8443"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "empty",
			in:   "",
			want: "machine proxy.corp.example:8443 login modgate password NEW\n",
		},
		{
			name: "append-keeps-others",
			in:   "# work\nmachine github.com login me password ghp_x\n\nmachine proxy.corp.example login a password b\n",
			want: "# work\nmachine github.com login me password ghp_x\n\nmachine proxy.corp.example login a password b\nmachine proxy.corp.example:8443 login modgate password NEW\n",
		},
		{
			name: "append-no-final-newline",
			in:   "machine github.com login me password ghp_x",
			want: "machine github.com login me password ghp_x\nmachine proxy.corp.example:8443 login modgate password NEW\n",
		},
		{
			name: "update-in-place-multiline",
			in:   "machine a login x password y\nmachine proxy.corp.example:8443\n\tlogin old   # keep this comment\n\tpassword OLD\nmachine z login q password r\n",
			want: "machine a login x password y\nmachine proxy.corp.example:8443\n\tlogin modgate   # keep this comment\n\tpassword NEW\nmachine z login q password r\n",
		},
		{
			name: "update-adds-missing-password",
			in:   "machine proxy.corp.example:8443 login someone\nmachine z login q password r\n",
			want: "machine proxy.corp.example:8443 login modgate password NEW\nmachine z login q password r\n",
		},
		{
			name: "update-every-duplicate",
			in:   "machine proxy.corp.example:8443 login a password OLD1\nmachine proxy.corp.example:8443 login b password OLD2 password OLD3\n",
			want: "machine proxy.corp.example:8443 login modgate password NEW\nmachine proxy.corp.example:8443 login modgate password NEW password NEW\n",
		},
		{
			name: "before-default",
			in:   "machine a login x password y\ndefault login anonymous password me@example\n",
			want: "machine a login x password y\nmachine proxy.corp.example:8443 login modgate password NEW\ndefault login anonymous password me@example\n",
		},
		{
			name: "before-default-sharing-a-line",
			in:   "machine a login x password y default login anonymous password p\n",
			want: "machine a login x password y \nmachine proxy.corp.example:8443 login modgate password NEW\ndefault login anonymous password p\n",
		},
		{
			name: "after-open-macro",
			in:   "machine a login x password y macdef init\ncd /pub\nbinary",
			want: "machine a login x password y macdef init\ncd /pub\nbinary\n\nmachine proxy.corp.example:8443 login modgate password NEW\n",
		},
		{
			name: "macro-text-is-not-an-entry",
			in:   "macdef init\nmachine proxy.corp.example:8443 login fake password fake\n\nmachine b login c password d\n",
			want: "macdef init\nmachine proxy.corp.example:8443 login fake password fake\n\nmachine b login c password d\nmachine proxy.corp.example:8443 login modgate password NEW\n",
		},
		{
			name: "comment-is-not-an-entry",
			in:   "# machine proxy.corp.example:8443 login fake password fake\n",
			want: "# machine proxy.corp.example:8443 login fake password fake\nmachine proxy.corp.example:8443 login modgate password NEW\n",
		},
		{
			name: "crlf",
			in:   "machine a login x password y\r\nmachine proxy.corp.example:8443 login o password OLD\r\n",
			want: "machine a login x password y\r\nmachine proxy.corp.example:8443 login modgate password NEW\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := Parse([]byte(tt.in))
			before := f.Machines()
			if err := f.Set(host, "modgate", "NEW"); err != nil {
				t.Fatal(err)
			}
			got := string(f.Bytes())
			if got != tt.want {
				t.Fatalf("got:\n%q\nwant:\n%q", got, tt.want)
			}
			if m, ok := f.Lookup(host); !ok || m.Login != "modgate" || m.Password != "NEW" {
				t.Errorf("Lookup = %+v, %v", m, ok)
			}
			if login, pw, ok := goLookup(got, host); !ok || login != "modgate" || pw != "NEW" {
				t.Errorf("the go command would read %q %q %v", login, pw, ok)
			}
			// Other entries are unchanged.
			other := func(ms []Machine) []Machine {
				return slices.DeleteFunc(ms, func(m Machine) bool { return m.Name == host })
			}
			if a, b := other(before), other(f.Machines()); !slices.Equal(a, b) {
				t.Errorf("other entries changed:\n%+v\n%+v", a, b)
			}
			// Setting again is idempotent.
			if err := f.Set(host, "modgate", "NEW"); err != nil || string(f.Bytes()) != got {
				t.Errorf("second Set changed the file: %v\n%q", err, f.Bytes())
			}
		})
	}
}

func TestSetRejectsBadTokens(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"", "a b", "a\nmachine evil", "#x", "tab\tbed"} {
		f := Parse([]byte("machine a login b password c\n"))
		if err := f.Set("h", "l", v); err == nil {
			t.Errorf("Set with password %q succeeded: %q", v, f.Bytes())
		}
		if err := f.Set(v, "l", "p"); err == nil {
			t.Errorf("Set with machine %q succeeded", v)
		}
	}
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "dotfiles", "netrc")
	os.MkdirAll(filepath.Dir(real), 0o755)
	if err := os.WriteFile(real, []byte("machine a login b password c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".netrc")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(link)
	if err != nil {
		t.Fatal(err)
	}
	f.Set("h:1", "l", "p")
	if err := f.WriteFile(link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v", err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(real)
	if string(data) != "machine a login b password c\nmachine h:1 login l password p\n" {
		t.Errorf("contents %q", data)
	}
	if entries, _ := os.ReadDir(filepath.Dir(real)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	missing, err := ReadFile(filepath.Join(dir, "none"))
	if err != nil || len(missing.Machines()) != 0 {
		t.Errorf("missing file: %v %v", missing, err)
	}
}

// FuzzSet checks on arbitrary files that parsing round-trips, that Set only
// touches the named machine's entries, and that the go command then reads the
// new credentials.
func FuzzSet(f *testing.F) {
	f.Add("machine a login b password c\n")
	f.Add("# c\nmachine h:1 login x\npassword y macdef m\nbody\n\ndefault login q password r")
	f.Add("macdef x\nmachine h:1 login a password b")
	f.Add("machine\nh:1\nlogin\nl\npassword\np\n")
	f.Fuzz(func(t *testing.T, in string) {
		p := Parse([]byte(in))
		if !bytes.Equal(p.Bytes(), []byte(in)) {
			t.Fatal("Parse does not round-trip")
		}
		before := p.Machines()
		if err := p.Set("h:1", "modgate", "tok"); err != nil {
			t.Fatal(err)
		}
		out := string(p.Bytes())
		if m, ok := p.Lookup("h:1"); !ok || m.Login != "modgate" || m.Password != "tok" {
			t.Fatalf("Lookup after Set = %+v %v\n%q", m, ok, out)
		}
		other := func(ms []Machine) []Machine {
			return slices.DeleteFunc(ms, func(m Machine) bool { return m.Name == "h:1" })
		}
		if a, b := other(before), other(p.Machines()); !slices.Equal(a, b) {
			t.Fatalf("other entries changed:\n%+v\n%+v\n%q", a, b, out)
		}
		if login, pw, ok := goLookup(out, "h:1"); !ok || login != "modgate" || pw != "tok" {
			t.Fatalf("the go command reads %q %q %v from\n%q", login, pw, ok, out)
		}
	})
}

// The file chosen is the one the go command reads (cmd/go/internal/auth.netrcPath).
func TestDefaultPath(t *testing.T) {
	t.Parallel()
	home := filepath.Join("home", "u")
	noEnv := func(string) string { return "" }
	homeDir := func() (string, error) { return home, nil }
	existing := func(names ...string) func(string) (os.FileInfo, error) {
		return func(p string) (os.FileInfo, error) {
			for _, n := range names {
				if p == filepath.Join(home, n) {
					return nil, nil
				}
			}
			return nil, os.ErrNotExist
		}
	}
	tests := []struct {
		name   string
		goos   string
		env    string
		exists []string
		want   string
	}{
		{name: "ok/netrc-env-wins", goos: "windows", env: "/x/netrc", exists: []string{"_netrc"}, want: "/x/netrc"},
		{name: "ok/unix-dot-netrc", goos: "linux", want: filepath.Join(home, ".netrc")},
		{name: "ok/darwin-ignores-_netrc", goos: "darwin", exists: []string{"_netrc"}, want: filepath.Join(home, ".netrc")},
		{name: "ok/windows-existing-_netrc", goos: "windows", exists: []string{"_netrc", ".netrc"}, want: filepath.Join(home, "_netrc")},
		{name: "ok/windows-existing-dot-netrc", goos: "windows", exists: []string{".netrc"}, want: filepath.Join(home, ".netrc")},
		{name: "ok/windows-new-file-is-_netrc", goos: "windows", want: filepath.Join(home, "_netrc")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := noEnv
			if tt.env != "" {
				getenv = func(k string) string {
					if k == "NETRC" {
						return tt.env
					}
					return ""
				}
			}
			got, err := defaultPath(tt.goos, getenv, homeDir, existing(tt.exists...))
			if err != nil || got != tt.want {
				t.Fatalf("defaultPath = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
