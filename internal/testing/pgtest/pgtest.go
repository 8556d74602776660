// Package pgtest gives tests a real PostgreSQL: a freshly migrated database per test,
// and whole clusters that a test may stop and start to simulate an outage.
//
// With MODGATE_TEST_DATABASE_URL set (an admin URL, as printed by `.ci/postgres url`)
// databases are created in that cluster. Otherwise the first call starts a private
// cluster for the test process in a temporary directory; a watchdog process stops it
// and removes the directory when the test process exits, however it exits.
//
// Each database is cloned (CREATE DATABASE ... TEMPLATE) from a template migrated once;
// the template's name carries a hash of the migrations, so changing a migration builds
// a new template and parallel test processes share one.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/database"
)

// EnvURL names the variable holding an admin URL of a running cluster.
const EnvURL = "MODGATE_TEST_DATABASE_URL"

var shared struct {
	once    sync.Once
	cluster *Cluster // nil when EnvURL is used
	admin   string
	err     error
}

func sharedAdminURL() (string, error) {
	shared.once.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			shared.admin = u
			return
		}
		c, err := startCluster()
		if err != nil {
			shared.err = err
			return
		}
		shared.cluster = c
		shared.admin = c.URL()
	})
	return shared.admin, shared.err
}

// NewDatabase creates a freshly migrated database for t, dropped when t ends, and
// returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin, err := sharedAdminURL()
	if err != nil {
		t.Fatalf("pgtest: starting PostgreSQL: %v", err)
	}
	return newDatabase(t, admin)
}

// NewPool is NewDatabase plus an open pool, closed when t ends.
func NewPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	u := NewDatabase(t)
	return Pool(t, u), u
}

// Pool opens a pool on url, closed when t ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := database.Open(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

var dbCounter atomic.Int64

func newDatabase(t testing.TB, admin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := fmt.Sprintf("test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, dbCounter.Add(1))
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{tmpl}.Sanitize())); err != nil {
		t.Fatalf("pgtest: creating database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("pgtest: dropping %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
			t.Logf("pgtest: dropping %s: %v", name, err)
		}
	})
	return withDatabase(admin, name)
}

// templates remembers the templates this process has checked, by admin URL.
var templates sync.Map // admin URL -> *templateOnce

type templateOnce struct {
	once sync.Once
	name string
	err  error
}

func ensureTemplate(ctx context.Context, admin string) (string, error) {
	v, _ := templates.LoadOrStore(admin, &templateOnce{})
	to := v.(*templateOnce)
	to.once.Do(func() { to.name, to.err = buildTemplate(ctx, admin) })
	return to.name, to.err
}

func buildTemplate(ctx context.Context, admin string) (string, error) {
	ms, err := database.Load()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range ms {
		fmt.Fprintf(h, "%s\x00%s\x00", m.Name, m.SQL)
	}
	name := "modgate_tmpl_" + hex.EncodeToString(h.Sum(nil))[:12]

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	// Other test processes may be building the same template.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('pgtest template'))"); err != nil {
		return "", err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext('pgtest template'))") //nolint:errcheck
	var ready bool
	err = conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&ready)
	if err == nil && ready {
		return name, nil
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	// Absent, or left half-built by a process that died: start over.
	if _, err := conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s", pgx.Identifier{name}.Sanitize())); err != nil {
		return "", err
	}
	tc, err := pgx.Connect(ctx, withDatabase(admin, name))
	if err != nil {
		return "", err
	}
	_, err = database.MigrateConn(ctx, tc)
	tc.Close(context.Background())
	if err != nil {
		return "", fmt.Errorf("migrating template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH IS_TEMPLATE true", pgx.Identifier{name}.Sanitize())); err != nil {
		return "", err
	}
	return name, nil
}

func withDatabase(admin, name string) string {
	u, err := url.Parse(admin)
	if err != nil {
		return admin
	}
	u.Path = "/" + name
	return u.String()
}

// Cluster is a private PostgreSQL cluster owned by one test.
type Cluster struct {
	dir    string
	bindir string
	port   int
	owner  *user.User // nil when not running as root
	mu     sync.Mutex
	stopWD func()
}

// NewCluster starts a private cluster for t, stopped and removed when t ends. Use it
// for tests that stop PostgreSQL; everything else should use NewDatabase.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(c.destroy)
	return c
}

// URL is the admin URL (database postgres). It stays valid across Stop and Start.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// NewDatabase creates a freshly migrated database in this cluster for t.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, c.URL())
}

// Stop kills the server the way a crash or an outage would (immediate shutdown: no
// checkpoint, clients see their connections reset).
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pgctl("-m", "immediate", "-w", "stop")
}

// Start starts a stopped cluster on the same port and returns once it accepts
// connections (after an immediate stop it first replays its WAL).
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.pgctl("-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60", "start"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.URL())
		if err == nil {
			return conn.Close(ctx)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster did not accept connections: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) pgctl(args ...string) error {
	args = append([]string{"-D", filepath.Join(c.dir, "data")}, args...)
	out, err := c.command(filepath.Join(c.bindir, "pg_ctl"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// command runs a server binary as the cluster's owner: PostgreSQL refuses root.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	if c.owner != nil {
		uid, _ := strconv.Atoi(c.owner.Uid)
		gid, _ := strconv.Atoi(c.owner.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = append(os.Environ(), "HOME="+c.dir)
	}
	return cmd
}

func (c *Cluster) destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.pgctl("-m", "immediate", "-w", "stop")
	if c.stopWD != nil {
		c.stopWD()
	}
	os.RemoveAll(c.dir)
}

// BinDir finds the PostgreSQL server binaries, preferring version 15.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append([]string{"/usr/lib/postgresql/15/bin"}, dirs...)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries not found: run .ci/postgres start (it installs postgresql-15)")
}

func versionOf(bindir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return n
}

func startCluster() (*Cluster, error) {
	bindir, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "modgate-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bindir: bindir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs a postgres OS user: %w", err)
		}
		c.owner = u
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.command(filepath.Join(bindir, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.port = port
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
fsync = on
max_connections = 200
shared_buffers = 64MB
`, port)
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte("host all all 127.0.0.1/32 trust\n"), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if c.owner != nil {
		uid, _ := strconv.Atoi(c.owner.Uid)
		gid, _ := strconv.Atoi(c.owner.Gid)
		os.Chown(filepath.Join(data, "pg_hba.conf"), uid, gid)
	}
	if err := c.startWatchdog(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.Start(); err != nil {
		c.destroy()
		return nil, err
	}
	return c, nil
}

// startWatchdog starts a shell that waits for its stdin to close, then stops the
// cluster and removes its directory. Its stdin is a pipe held by this process, so the
// cluster goes away when the test process exits, even by SIGKILL or a test timeout.
func (c *Cluster) startWatchdog() error {
	pgctl := filepath.Join(c.bindir, "pg_ctl")
	data := filepath.Join(c.dir, "data")
	stop := fmt.Sprintf("%q -D %q -m immediate -w stop", pgctl, data)
	if c.owner != nil {
		stop = fmt.Sprintf("runuser -u %s -- %s", c.owner.Username, stop)
	}
	script := fmt.Sprintf("cat >/dev/null; %s >/dev/null 2>&1; rm -rf %q", stop, c.dir)
	cmd := exec.Command("sh", "-c", script)
	// Its own process group, so the signal that kills the test does not kill it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.stopWD = func() {
		w.Close()
		cmd.Wait()
	}
	return nil
}

func appendFile(name, s string) error {
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
