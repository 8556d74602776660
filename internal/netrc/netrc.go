// Package netrc reads and edits .netrc files without disturbing them.
//
// `modgate login` stores the proxy token in the developer's ~/.netrc, a file
// that also holds credentials for other hosts and that people edit by hand. So
// an edit changes exactly the bytes of the entry it updates (or appends one
// entry), and keeps every other entry, comment, macro and blank line as it was.
//
// Syntax (GNU inetutils, with the common extensions): whitespace-separated
// tokens; "machine NAME" or "default" starts an entry, followed by "login L",
// "password P", "account A", "port N" pairs; "macdef NAME" starts a macro whose
// body runs from the next line to the first empty line; "#" at the start of a
// token starts a comment running to the end of the line. Quoted tokens are not
// supported, as the go command does not support them either.
//
// The go command (cmd/go/internal/auth/netrc.go) keys credentials by the
// machine string and looks them up by the request URL without "https://",
// trying path prefixes: so a proxy on a non-default port needs the machine
// "host:port", and one on 443 the bare "host". It uses the first entry for a
// machine and needs login and password both present.
package netrc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// Machine is one entry.
type Machine struct {
	Name     string // empty for the default entry
	Default  bool
	Login    string
	Password string
	Account  string
}

// File is a parsed .netrc that remembers its bytes.
type File struct {
	src     []byte
	entries []entry
	// endsInMacro says the source ends inside a macro body not closed by an
	// empty line; text appended after it would join the macro.
	endsInMacro bool
	// dangling says the source ends with a keyword still waiting for its
	// value; the first token appended would become that value.
	dangling bool
}

type token struct {
	start, end int
}

type entry struct {
	head   token              // the "machine" or "default" keyword
	name   *token             // the machine name; nil for default
	values map[string][]token // login, password, account, port → value tokens, in order
	last   token              // the entry's last token (name or value)
}

// Parse parses data. Every byte sequence is accepted: .netrc has no syntax
// errors, only tokens that mean nothing.
func Parse(data []byte) *File {
	f := &File{src: bytes.Clone(data)}
	var cur *entry
	var pendingKey string // a keyword waiting for its value
	inMacro := false
	lineStart := true // at the start of a line (for macro termination)
	i := 0
	src := f.src
	for i < len(src) {
		if inMacro {
			// The macro body runs to the first empty line.
			nl := bytes.IndexByte(src[i:], '\n')
			if nl < 0 {
				f.endsInMacro = i < len(src)
				i = len(src)
				break
			}
			if lineStart && nl == 0 {
				inMacro = false
			}
			i += nl + 1
			lineStart = true
			continue
		}
		c := src[i]
		if c == '\n' {
			i++
			lineStart = true
			if pendingKey == "macdef" {
				inMacro = true
				pendingKey = ""
			}
			continue
		}
		if isSpace(c) {
			i++
			continue
		}
		lineStart = false
		if c == '#' {
			nl := bytes.IndexByte(src[i:], '\n')
			if nl < 0 {
				i = len(src)
			} else {
				i += nl // the newline itself is handled above
			}
			continue
		}
		start := i
		for i < len(src) && !isSpace(src[i]) && src[i] != '\n' {
			i++
		}
		tok := token{start, i}
		word := string(src[start:i])

		switch pendingKey {
		case "":
		case "macdef":
			// The macro's name; the body starts at the next line.
			pendingKey = "macdef"
			continue
		case "machine":
			t := tok
			cur.name = &t
			cur.last = tok
			pendingKey = ""
			continue
		default:
			if cur != nil {
				cur.values[pendingKey] = append(cur.values[pendingKey], tok)
				cur.last = tok
			}
			pendingKey = ""
			continue
		}

		switch word {
		case "machine", "default":
			f.entries = append(f.entries, entry{head: tok, values: map[string][]token{}, last: tok})
			cur = &f.entries[len(f.entries)-1]
			if word == "machine" {
				pendingKey = "machine"
			}
		case "login", "password", "account", "port":
			pendingKey = word
		case "macdef":
			pendingKey = "macdef"
		default:
			// A stray token: ignored, as every netrc reader does.
		}
	}
	f.dangling = pendingKey != "" && pendingKey != "macdef"
	if pendingKey == "macdef" && !inMacro {
		// "macdef NAME" on the last line without a newline: the body would
		// start on the next line, so appended text must not follow directly.
		f.endsInMacro = true
	}
	if inMacro {
		f.endsInMacro = true
	}
	return f
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' }

func (f *File) text(t token) string { return string(f.src[t.start:t.end]) }

// Machines returns the entries in file order.
func (f *File) Machines() []Machine {
	ms := make([]Machine, 0, len(f.entries))
	for _, e := range f.entries {
		ms = append(ms, f.machine(e))
	}
	return ms
}

func (f *File) machine(e entry) Machine {
	m := Machine{Default: e.name == nil && f.text(e.head) == "default"}
	if e.name != nil {
		m.Name = f.text(*e.name)
	}
	if ts := e.values["login"]; len(ts) > 0 {
		m.Login = f.text(ts[0])
	}
	if ts := e.values["password"]; len(ts) > 0 {
		m.Password = f.text(ts[0])
	}
	if ts := e.values["account"]; len(ts) > 0 {
		m.Account = f.text(ts[0])
	}
	return m
}

// Lookup returns the first entry for machine name, as the go command uses it.
func (f *File) Lookup(name string) (Machine, bool) {
	for _, e := range f.entries {
		if e.name != nil && f.text(*e.name) == name {
			return f.machine(e), true
		}
	}
	return Machine{}, false
}

// Bytes returns the file's current contents.
func (f *File) Bytes() []byte { return bytes.Clone(f.src) }

// ErrInvalidToken reports a name, login or password that cannot be written as
// one .netrc token.
var ErrInvalidToken = errors.New("netrc: value is empty or contains whitespace or a leading '#'")

func validToken(s string) bool {
	return s != "" && s[0] != '#' && !strings.ContainsAny(s, " \t\r\n\f\v")
}

// Set makes every entry for machine name carry login and password, editing
// those values in place; if there is none, it adds "machine NAME login L
// password P" on a line of its own, before the default entry if there is one
// (readers stop at default). Nothing else in the file changes.
func (f *File) Set(name, login, password string) error {
	for _, s := range []string{name, login, password} {
		if !validToken(s) {
			return ErrInvalidToken
		}
	}
	type edit struct {
		start, end int
		text       string
	}
	var edits []edit
	found := false
	for _, e := range f.entries {
		if e.name == nil || f.text(*e.name) != name {
			continue
		}
		found = true
		var add string
		for _, kv := range [][2]string{{"login", login}, {"password", password}} {
			// Every occurrence: readers disagree on which of a repeated
			// key counts (the go command takes the last before the entry is
			// complete), so none may keep the old value.
			for _, t := range e.values[kv[0]] {
				edits = append(edits, edit{t.start, t.end, kv[1]})
			}
			if len(e.values[kv[0]]) == 0 {
				add += " " + kv[0] + " " + kv[1]
			}
		}
		if add != "" {
			edits = append(edits, edit{e.last.end, e.last.end, add})
		}
	}
	if !found {
		line := "machine " + name + " login " + login + " password " + password + "\n"
		at := len(f.src)
		for _, e := range f.entries {
			if e.name == nil && f.text(e.head) == "default" {
				at = bytes.LastIndexByte(f.src[:e.head.start], '\n') + 1
				if strings.TrimSpace(string(f.src[at:e.head.start])) != "" {
					// default shares its line with other tokens: start a new line.
					at = e.head.start
					line = "\n" + line
				}
				break
			}
		}
		if at == len(f.src) && f.dangling {
			// Appending would complete someone else's half entry; the top of
			// the file is always a clean boundary.
			at = 0
		} else if at == len(f.src) {
			if f.endsInMacro {
				if len(f.src) > 0 && f.src[len(f.src)-1] != '\n' {
					line = "\n" + line
				}
				line = "\n" + line // the empty line that ends the macro
			} else if len(f.src) > 0 && f.src[len(f.src)-1] != '\n' {
				line = "\n" + line
			}
		}
		edits = append(edits, edit{at, at, line})
	}
	// Apply from the end so earlier offsets stay valid.
	slices.SortStableFunc(edits, func(a, b edit) int { return a.start - b.start })
	out := bytes.Clone(f.src)
	for i := len(edits) - 1; i >= 0; i-- {
		e := edits[i]
		out = append(out[:e.start:e.start], append([]byte(e.text), out[e.end:]...)...)
	}
	// The go command pairs tokens line by line and knows no comments, so on an
	// unusual file (stray tokens, keywords split across lines) it can read an
	// entry differently from us. If it would not see the new credentials, put
	// a clean line at the very top: it reads that line first and uses the
	// first entry for a machine.
	if l, p, ok := goLookup(string(out), name); !ok || l != login || p != password {
		out = append([]byte("machine "+name+" login "+login+" password "+password+"\n"), out...)
	}
	*f = *Parse(out)
	return nil
}

// goLookup returns the credentials the go command reads from data for machine.
// The parser is the go command's (cmd/go/internal/auth/netrc.go, Go 1.26, BSD
// licence), kept verbatim so Set can check its result against it.
func goLookup(data, machine string) (login, password string, ok bool) {
	type netrcLine struct{ machine, login, password string }
	var l netrcLine
	inMacro := false
	for line := range strings.SplitSeq(data, "\n") {
		if inMacro {
			if line == "" {
				inMacro = false
			}
			continue
		}
		f := strings.Fields(line)
		i := 0
		for ; i < len(f)-1; i += 2 {
			switch f[i] {
			case "machine":
				l = netrcLine{machine: f[i+1]}
			case "default":
				break
			case "login":
				l.login = f[i+1]
			case "password":
				l.password = f[i+1]
			case "macdef":
				inMacro = true
			}
			if l.machine != "" && l.login != "" && l.password != "" {
				if l.machine == machine {
					return l.login, l.password, true
				}
				l = netrcLine{}
			}
		}
		if i < len(f) && f[i] == "default" {
			break
		}
	}
	return "", "", false
}

// DefaultPath returns the .netrc the go command reads (cmd/go/internal/auth's
// netrcPath): $NETRC, else on Windows %USERPROFILE%\_netrc when it exists,
// else ~/.netrc. On Windows, when neither file exists yet, it returns _netrc:
// the go command prefers _netrc once it exists, and it is the name git and curl
// read there, so one file serves all three.
func DefaultPath() (string, error) {
	return defaultPath(runtime.GOOS, os.Getenv, os.UserHomeDir, os.Stat)
}

func defaultPath(goos string, getenv func(string) string, homeDir func() (string, error), stat func(string) (os.FileInfo, error)) (string, error) {
	if env := getenv("NETRC"); env != "" {
		return env, nil
	}
	home, err := homeDir() // %USERPROFILE% on Windows, as for the go command
	if err != nil {
		return "", fmt.Errorf("netrc: %w", err)
	}
	dotNetrc := filepath.Join(home, ".netrc")
	if goos != "windows" {
		return dotNetrc, nil
	}
	legacy := filepath.Join(home, "_netrc")
	for _, p := range []string{legacy, dotNetrc} {
		_, err := stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			// The go command gives up here too rather than guess.
			return "", fmt.Errorf("netrc: %w", err)
		}
	}
	return legacy, nil
}

// ReadFile parses the file at path; a missing file is an empty File.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Parse(nil), nil
	}
	if err != nil {
		return nil, fmt.Errorf("netrc: %w", err)
	}
	return Parse(data), nil
}

// WriteFile replaces the file at path with f's contents, mode 0600 since it
// holds credentials. It writes a temporary file next to the target and renames
// it over, so a crash leaves the old or the new file, never half of one. A
// symlinked .netrc (dotfile managers) is written through: the link stays.
func (f *File) WriteFile(path string) (err error) {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".netrc-*.tmp")
	if err != nil {
		return fmt.Errorf("netrc: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("netrc: %w", err)
	}
	if _, err := tmp.Write(f.src); err != nil {
		tmp.Close()
		return fmt.Errorf("netrc: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("netrc: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("netrc: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("netrc: %w", err)
	}
	return nil
}
