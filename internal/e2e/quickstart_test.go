package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/modgate/modgate/internal/testing/proxytest"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The README's quickstart, as a new user runs it: a fresh clone, `make run` in the
// background, then the lines it prints — a public download, a private pull from
// the demo git repository, a publish, a delete with the admin credential, the
// audit query — and the console in Chromium signed in as the dev auditor (its
// certificate presented by `modgate agent`), with screenshots in the test's
// temporary directory. Only the addresses differ from the README: free ports, so
// the test runs beside a developer's own `make run`, and an upstream fixture,
// since this machine has no internet.
func TestQuickstartAsNewUser(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make not found")
	}
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	dir := t.TempDir()
	// .ci/postgres runs PostgreSQL as the postgres user when root runs it; it must
	// reach the clone's tmp/pg through the temporary directories (0700 by default).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	repo := filepath.Join(dir, "modgate")
	head, err := exec.Command("git", "-C", "../..", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"clone", "-q", "--no-checkout", "../..", repo},
		{"-C", repo, "checkout", "-q", strings.TrimSpace(string(head))},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// The dev config with this test's ports and upstream.
	dev, err := os.ReadFile(filepath.Join(repo, "deploy/modgate.dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	listen, gitAddr := freeAddr(t), freeAddr(t)
	cfg := strings.NewReplacer("127.0.0.1:8443", listen, "127.0.0.1:8444", gitAddr).Replace(string(dev))
	cfg += fmt.Sprintf("upstream:\n  proxies: %s\nsumdb:\n  verify: false  # the fixtures are in no checksum database\n", upstream.URL)
	cfgFile := filepath.Join(repo, "tmp", "quickstart.yaml")
	os.MkdirAll(filepath.Dir(cfgFile), 0o755)
	writeFile(t, cfgFile, []byte(cfg))

	run := exec.Command("make", "run")
	run.Dir = repo
	// Below Linux's ephemeral range (32768-60999): a port in it can be taken
	// between .ci/postgres choosing it and PostgreSQL binding it by any
	// connection another test opens meanwhile, which failed a CI run.
	run.Env = append(os.Environ(), "MODGATE_DEV_CONFIG=tmp/quickstart.yaml", "MODGATE_PG_PORT=25432")
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := run.StdoutPipe()
	logs := &safeBuffer{}
	run.Stderr = logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-run.Process.Pid, syscall.SIGINT) // Ctrl-C, as the user stops it
		done := make(chan struct{})
		go func() { run.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
		}
		exec.Command("bash", filepath.Join(repo, ".ci/postgres"), "stop").Run()
		if t.Failed() {
			t.Logf("make run stderr:\n%s", logs.String())
		}
	})

	// Read what make run prints until it says how to stop it.
	var printed strings.Builder
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(10 * time.Minute) // the first build of bin/modgate on a busy machine
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("make run ended:\n%s\n%s", printed.String(), logs.String())
			}
			printed.WriteString(l + "\n")
			if strings.HasPrefix(l, "Stop with Ctrl-C") {
				break wait
			}
		case <-timeout:
			t.Fatalf("make run printed no instructions in time:\n%s\n%s", printed.String(), logs.String())
		}
	}
	go io.Copy(io.Discard, stdout)
	out := printed.String()
	t.Logf("make run printed:\n%s", out)
	if !strings.Contains(out, "https://"+listen) || strings.Contains(out, "8443") {
		t.Errorf("printed lines do not follow the config's listen %s", listen)
	}
	find := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("make run printed no line matching %s", re)
		}
		return m[1]
	}
	netrcLine := find(`echo "(machine \S+ login dev password mgt_\S+)"`)
	adminToken := find(`admin +admin +team platform-admins.*\n +(mgt_\S+)`)
	find(`auditor +auditor +team security-audit.*\n +(mgt_\S+)`)
	publishLine := find(`\n +(bin/modgate publish .*)\n`)
	deleteLine := find(`\n +(bin/modgate delete .*)\n`)
	auditLine := find(`\n +(bin/modgate audit query --config \S+ --since 1h)\n`)
	if !strings.Contains(deleteLine, adminToken) {
		t.Errorf("the delete line does not use the admin credential: %s", deleteLine)
	}

	// Wait for the server behind the printed address.
	home := t.TempDir()
	writeFile(t, filepath.Join(home, ".netrc"), []byte(netrcLine+"\n"))
	os.Chmod(filepath.Join(home, ".netrc"), 0o600)
	shell := func(line string, env ...string) string {
		t.Helper()
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), append([]string{
			"HOME=" + home, "NETRC=" + filepath.Join(home, ".netrc"),
			"SSL_CERT_FILE=" + filepath.Join(repo, "certs/ca.pem"), "GOFLAGS=-modcacherw",
			"GOPROXY=https://" + listen, "GONOSUMDB=corp.example/*", "GOSUMDB=off",
			"GOMODCACHE=" + filepath.Join(home, "mod"), "GOPATH=" + filepath.Join(home, "go"),
		}, env...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s\nmodgate:\n%s", line, err, b, logs.String())
		}
		return string(b)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("modgate never listened on %s:\n%s", listen, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A public download and a private pull, as printed (public: the fixture's module).
	if got := shell("go mod download -json " + proxytest.HelloPath + "@v1.0.0"); !strings.Contains(got, `"Zip"`) {
		t.Errorf("public download:\n%s", got)
	}
	if got := shell("go mod download -json corp.example/platform/hello@v1.0.0"); !strings.Contains(got, `"Zip"`) {
		t.Errorf("private pull:\n%s", got)
	}
	if got := shell(publishLine); !strings.Contains(got, "published") {
		t.Errorf("publish: %s", got)
	}
	if got := shell(deleteLine); !strings.Contains(got, "deleted") {
		t.Errorf("delete: %s", got)
	}
	// The audit trail, with the printed database line, lists all of it.
	var audit string
	for i := 0; i < 50; i++ {
		audit = shell(auditLine)
		if strings.Contains(audit, "delete") && strings.Contains(audit, "corp.example/platform/hello") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range []string{"publish", "delete", "corp.example/platform/hello", proxytest.HelloPath} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit query lacks %q:\n%s", want, audit)
		}
	}

	// The console, in Chromium, signed in by the dev auditor's certificate. A
	// headless browser cannot present a client certificate; modgate agent does it
	// for the browser, as it does for the go command.
	agentAddr := freeAddr(t)
	agent := exec.Command(filepath.Join(repo, "bin/modgate"), "agent", "--upstream", "https://"+listen,
		"--cert", "certs/client-security-audit.pem", "--key", "certs/client-security-audit.key",
		"--ca", "certs/ca.pem", "--listen", agentAddr)
	agent.Dir = repo
	agent.Stdout, agent.Stderr = logs, logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", agentAddr); err == nil {
			c.Close()
			break
		}
		if i > 200 {
			t.Fatal("modgate agent did not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := newBrowser(t)
	shots := filepath.Join(dir, "screenshots")
	os.MkdirAll(shots, 0o755)
	shot := func(name string) {
		t.Helper()
		png := value(t, ctx, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do(t, ctx, chromedp.Navigate("http://"+agentAddr+"/ui/events"))
	shot("1-events")
	if loc := value(t, ctx, chromedp.Location()); strings.Contains(loc, "signin") {
		t.Errorf("the dev auditor was sent to %s", loc)
	}
	body := value(t, ctx, chromedp.Evaluate[string]("document.body.innerText"))
	if strings.Contains(body, "sign in") || !strings.Contains(body, "corp.example/platform/greet") {
		t.Errorf("the console as the dev auditor does not show the publish:\n%s", body)
	}
	t.Logf("screenshots in %s", shots)
	if _, err := os.Stat(filepath.Join(shots, "1-events.png")); err != nil {
		t.Error(err)
	}
}
