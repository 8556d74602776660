// Package policy decides who may do what to which module, by evaluating the
// security team's Rego policy (the policy/ directory) with OPA.
//
// The engine loads a directory of Rego modules, data files and Rego unit tests,
// compiles it once into a prepared query, and answers Decide calls against it.
// Decisions are cached per loaded policy. A reload (Reload, or Watch polling the
// directory) builds a complete new policy first — compiled, data schema-checked,
// unit tests passed — and only then swaps it in atomically; a policy that fails
// any step is logged and reported, and the last good one stays in force.
//
// A deny is reported to the go command as 403 Forbidden with the first reason as
// the body, never as 404 or 410: a 404 would make the go command fall through to
// the next proxy in GOPROXY (and so leak the module path to it, or fetch a
// module policy meant to block), and it would hide the reason from the developer.
package policy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opametrics "github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/derrors"
)

// Query is the Rego rule the engine evaluates. It must produce
// {"allow": bool, "reasons": [string, ...]}.
const Query = "data.modgate.authz.decision"

// Defaults for Options.
const (
	DefaultCacheSize      = 100_000
	DefaultTimeResolution = time.Minute
	DefaultWatchInterval  = time.Second
)

// Options configure an Engine. The zero value is usable.
type Options struct {
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are kept but not exported

	// CacheSize bounds the decision cache (entries); 0 means DefaultCacheSize
	// and a negative value disables the cache.
	CacheSize int

	// TimeResolution is the granularity of input.time: the decision time is
	// rounded down to it, and cached decisions are keyed by the rounded time, so
	// a cached decision is exactly what the policy would answer now. Rules that
	// depend on time (the cool-down) take effect up to one resolution late,
	// never early. 0 means DefaultTimeResolution.
	TimeResolution time.Duration

	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	// Advisories and Licenses compute input.advisories and input.licenses for a
	// pull of module@version. The engine calls them only when the policy in force
	// reads the field and its settings switch (settings.vulnerabilities.enabled,
	// settings.licenses.enabled) is on, so a policy that does not use them costs
	// nothing; both must be cheap after their first call for a version (the
	// composition root caches them). Nil leaves the fields empty.
	Advisories func(ctx context.Context, module, version string) ([]Advisory, error)
	Licenses   func(ctx context.Context, module, version string) ([]string, error)

	// SkipTests loads a policy without running its *_test.rego tests
	// (`modgate policy explain` on a work in progress). The server never sets it.
	SkipTests bool
}

// Decision is the policy's answer to one Input.
type Decision struct {
	Allow bool
	// Reasons explain the answer. For a deny the first one is the line the
	// client sees ("team payments may not pull corp.example/secret/x: owned by
	// team platform"); for an allow they name the rules that allowed it.
	// Callers must not modify the slice.
	Reasons []string
	// ID identifies this decision in logs and the audit trail (random, unique).
	ID string
	// Revision names the policy that decided (hash of its files).
	Revision string
	// Cached reports whether the decision cache answered.
	Cached bool
}

// Reason returns the first reason, the one to show the client.
func (d Decision) Reason() string {
	if len(d.Reasons) == 0 {
		if d.Allow {
			return "allowed"
		}
		return "denied by policy"
	}
	return d.Reasons[0]
}

// Err returns nil if the decision allows, else a derrors.PermissionDenied error
// whose public message is the first reason and whose cause (for the log) names
// the decision and policy revision. The server must answer it with 403, never
// 404/410 (see the package comment): the go command prints the body of a 403 to
// the developer and does not try the next proxy.
func (d Decision) Err() error {
	if d.Allow {
		return nil
	}
	return derrors.WithCause(derrors.PermissionDenied,
		fmt.Errorf("policy decision %s (revision %s)", d.ID, d.Revision), "%s", d.Reason())
}

// Status describes the policy in force and the last reload attempt; the server
// shows it on /readyz.
type Status struct {
	Dir         string    `json:"dir"`
	Revision    string    `json:"revision"`
	LoadedAt    time.Time `json:"loaded_at"`
	LastError   string    `json:"last_error,omitempty"` // the last failed reload, cleared by a successful one
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Engine evaluates the policy loaded from a directory. It is safe for
// concurrent use.
type Engine struct {
	dir     string
	opts    Options
	log     *slog.Logger
	metrics *metrics

	current atomic.Pointer[state]

	reloadMu        sync.Mutex // serialises reloads; guards lastFingerprint
	lastFingerprint string

	statusMu sync.Mutex
	status   Status
}

// state is one loaded policy: replaced as a whole on reload.
type state struct {
	revision string
	query    rego.PreparedEvalQuery
	used     inputField // input fields the policy reads: the cache key
	// timeDep says which decisions depend on input.time (nil: none do).
	timeDep *timeDependence
	// versionTime: decisions depend on the version's publication time, so the
	// caller must look it up (an .info fetch per version) before deciding.
	versionTime bool
	// advisories, licenses: decisions depend on input.advisories and
	// input.licenses, which the engine fills in for pulls of a version.
	advisories, licenses bool
	// For list filtering (FilterVersions): the versions any deny-list entry
	// names, and the cool-down's length.
	namedVersions map[string]bool
	cooldown      time.Duration
	cache         *decisionCache
	loadedAt      time.Time
}

// Load reads, compiles and tests the policy in dir. Unlike a reload, a failure
// here is returned: the server must not start without a policy.
func Load(ctx context.Context, dir string, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.TimeResolution <= 0 {
		opts.TimeResolution = DefaultTimeResolution
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{dir: dir, opts: opts, log: opts.Logger, metrics: m, status: Status{Dir: dir}}
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// NeedsVersionTime reports whether decisions in force depend on Input.VersionTime
// (the cool-down is enabled). Finding a version's time costs an .info lookup or
// a database row, and for a list a database statement, so callers fill it in
// only when this is true.
func (e *Engine) NeedsVersionTime() bool { return e.current.Load().versionTime }

// Revision returns the revision of the policy in force.
func (e *Engine) Revision() string { return e.current.Load().revision }

// Status returns the policy in force and the outcome of the last reload.
func (e *Engine) Status() Status {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	return e.status
}

// Reload loads the policy directory again. If the files are unchanged nothing
// happens. If the new policy fails to parse, compile, schema-check or pass its
// tests, the error is logged, counted and returned, and the current policy
// stays in force.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	// Taken before reading, so that a write racing with the read changes the
	// fingerprint again and Watch reloads once more.
	fp, fpErr := fingerprint(e.dir)
	if fpErr == nil {
		e.lastFingerprint = fp
	}

	st, err := e.build(ctx)
	if err != nil {
		e.metrics.reloadFailed.Inc()
		e.metrics.lastReloadFailed.Set(1)
		e.statusMu.Lock()
		e.status.LastError = err.Error()
		e.status.LastErrorAt = e.opts.Now()
		keeping := e.status.Revision
		e.statusMu.Unlock()
		if keeping != "" {
			e.log.Error("policy reload failed; keeping the last good policy",
				"dir", e.dir, "revision", keeping, "err", err)
		}
		return err
	}
	if st == nil { // unchanged
		e.metrics.lastReloadFailed.Set(0)
		e.statusMu.Lock()
		e.status.LastError, e.status.LastErrorAt = "", time.Time{}
		e.statusMu.Unlock()
		return nil
	}

	old := e.current.Swap(st)
	e.metrics.reloadOK.Inc()
	e.metrics.lastReloadFailed.Set(0)
	e.metrics.lastReloadSuccess.Set(float64(st.loadedAt.Unix()))
	e.metrics.revision.Reset()
	e.metrics.revision.WithLabelValues(st.revision).Set(1)
	e.statusMu.Lock()
	e.status.Revision, e.status.LoadedAt = st.revision, st.loadedAt
	e.status.LastError, e.status.LastErrorAt = "", time.Time{}
	e.statusMu.Unlock()
	if old == nil {
		e.log.Info("policy loaded", "dir", e.dir, "revision", st.revision)
	} else {
		e.log.Info("policy reloaded", "dir", e.dir, "revision", st.revision, "previous", old.revision)
	}
	return nil
}

// build reads and prepares the directory's policy; it returns nil, nil when the
// files are those of the policy in force.
func (e *Engine) build(ctx context.Context) (*state, error) {
	ws, err := readWorkspace(e.dir)
	if err != nil {
		return nil, err
	}
	if cur := e.current.Load(); cur != nil && cur.revision == ws.revision {
		return nil, nil
	}
	store, err := ws.store()
	if err != nil {
		return nil, err
	}
	query, used, timeDep, err := prepare(ctx, ws, store)
	if err != nil {
		return nil, err
	}
	if !e.opts.SkipTests {
		report, err := runTests(ctx, ws, store)
		if err != nil {
			return nil, err
		}
		if !report.OK() {
			return nil, fmt.Errorf("policy: %s", report.summary())
		}
	}
	return &state{
		revision: ws.revision,
		query:    query,
		used:     used,
		timeDep:  timeDep,
		versionTime: used&fieldVersionTime != 0 &&
			ws.data.Settings != nil && ws.data.Settings.Cooldown.Enabled,
		advisories: used&fieldAdvisories != 0 &&
			ws.data.Settings != nil && ws.data.Settings.Vulnerabilities.Enabled,
		licenses: used&fieldLicenses != 0 &&
			ws.data.Settings != nil && ws.data.Settings.Licenses.Enabled,
		namedVersions: ws.data.namedVersions(),
		cooldown:      ws.data.cooldown(),
		cache:         newDecisionCache(e.opts.CacheSize),
		loadedAt:      e.opts.Now(),
	}, nil
}

// store puts the workspace's data under data.modgate.
func (ws *workspace) store() (storage.Store, error) {
	doc, err := ws.data.document()
	if err != nil {
		return nil, fmt.Errorf("policy: data: %w", err)
	}
	// The document comes from encoding/json and is never mutated, so the
	// store need not copy it; AST values on read make every lookup cheaper.
	return inmem.NewFromObjectWithOpts(map[string]any{"modgate": doc},
		inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true)), nil
}

// compile compiles the workspace's modules (without the tests when policyOnly).
func (ws *workspace) compile(policyOnly bool) (*ast.Compiler, map[string]*ast.Module, error) {
	mods := make(map[string]*ast.Module, len(ws.modules))
	for name, m := range ws.modules {
		if policyOnly && ws.tests[name] {
			continue
		}
		mods[name] = m
	}
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(mods); c.Failed() {
		return nil, nil, fmt.Errorf("policy: %w", c.Errors)
	}
	return c, mods, nil
}

// prepare compiles the policy (tests excluded: they are not served) and
// prepares Query once; every decision reuses it. It also works out which input
// fields the policy reads and which decisions depend on the time.
func prepare(ctx context.Context, ws *workspace, store storage.Store) (rego.PreparedEvalQuery, inputField, *timeDependence, error) {
	// The tests must compile too, or `modgate policy test` would fail on a
	// policy the server accepted.
	if _, _, err := ws.compile(false); err != nil {
		return rego.PreparedEvalQuery{}, 0, nil, err
	}
	c, mods, err := ws.compile(true)
	if err != nil {
		return rego.PreparedEvalQuery{}, 0, nil, err
	}
	ref := ast.MustParseRef(Query)
	if len(c.GetRulesExact(ref)) == 0 {
		return rego.PreparedEvalQuery{}, 0, nil, fmt.Errorf("policy: no rule defines %s", Query)
	}
	used := inputFieldsRead(mods)
	td := analyseTime(c, used)
	pq, err := rego.New(
		rego.ParsedQuery(td.query()),
		rego.Compiler(c),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, 0, nil, fmt.Errorf("policy: preparing %s: %w", Query, err)
	}
	return pq, used, td, nil
}

// Decide evaluates the policy for in. An error means the policy could not
// decide (a bug in a rule, a cancelled context): the caller must refuse the
// request, and answer 500 rather than 403 since no rule denied it.
func (e *Engine) Decide(ctx context.Context, in Input) (Decision, error) {
	start := time.Now()
	st := e.current.Load()
	now := e.now(in.Time)
	if err := e.facts(ctx, st, &in, false); err != nil {
		e.metrics.errors.Inc()
		return Decision{}, err
	}
	v, hit, err := e.decide(ctx, st, &in, now)
	if err != nil {
		e.metrics.errors.Inc()
		return Decision{}, err
	}
	d := Decision{
		Allow:    v.allow,
		Reasons:  v.reasons,
		ID:       rand.Text(),
		Revision: st.revision,
		Cached:   hit,
	}
	e.metrics.decision(d.Allow, hit, time.Since(start).Seconds())
	return d, nil
}

// MaxListVersions is the longest version list FilterVersions accepts. A module
// with more versions than this is refused with a clear error rather than
// filtered: no genuine module comes near it (the largest on the public mirror
// have a few thousand), and an upstream sending millions is an attack on
// modgate's memory and CPU.
const MaxListVersions = 1 << 20

// CheckListLength refuses a version list of module longer than MaxListVersions,
// before anything is done for its versions.
func CheckListLength(module string, n int) error {
	if n > MaxListVersions {
		return derrors.New(derrors.BadUpstream, "the version list of %s has %d versions, more than the %d modgate filters", module, n, MaxListVersions)
	}
	return nil
}

// FilterVersions returns the versions, in their order, that the caller of in
// may pull: each is decided as a zip download of that version (so the go
// command never picks from a list a version it could not download), with
// timeOf(i) giving the publication time of versions[i] for the cool-down (nil
// or "" if unknown; asked only when the cool-down is on).
// It filters only: the server decides the list or latest request itself first,
// with Decide, to answer 403 when the module is off-limits altogether.
//
// The policy is not evaluated once per version. The versions of one list differ,
// as far as the policy is concerned, only in the version-specific rules: whether
// a deny-list entry names the version, and whether it is inside the cool-down.
// So the list is split in one pass into classes — each deny-listed version on
// its own; the others by cool-down state (unknown time, inside, past) — and the
// policy is evaluated once per class, for its first version. A list of 400,000
// versions costs a handful of evaluations. (A site rule that reads
// input.version in another way must make list filtering per version itself; see
// docs/policy.md.) Lists longer than MaxListVersions are refused.
func (e *Engine) FilterVersions(ctx context.Context, in Input, versions []string, timeOf func(i int) string) ([]string, error) {
	if err := CheckListLength(in.Module, len(versions)); err != nil {
		return nil, err
	}
	st := e.current.Load()
	now := e.now(in.Time)
	in.Action = ActionZip
	type class struct {
		named bool
		key   string
	}
	verdicts := make(map[class]bool)
	// The cool-down's edge as a string: the usual times ("2006-01-02T15:04:05Z",
	// UTC, whole seconds, as the go command and proxies write them) compare as
	// strings, sparing a time.Parse per version.
	edge := now.Add(-st.cooldown).Format(time.RFC3339)
	out := make([]string, 0, len(versions))
	for i, v := range versions {
		in.Version, in.VersionTime, in.Advisories, in.Licenses = v, "", nil, nil
		if timeOf != nil && st.versionTime {
			in.VersionTime = timeOf(i)
		}
		if err := e.facts(ctx, st, &in, true); err != nil {
			return nil, fmt.Errorf("policy: filtering versions of %s: %w", in.Module, err)
		}
		c := class{key: st.cooldownClass(in.VersionTime, now, edge)}
		if st.namedVersions[v] || len(in.Advisories) > 0 {
			// Deny-listed versions and versions with advisories are decided
			// on their own.
			c = class{named: true, key: v + " " + c.key}
		}
		allow, ok := verdicts[c]
		if !ok {
			verdict, _, err := e.decide(ctx, st, &in, now)
			if err != nil {
				return nil, fmt.Errorf("policy: filtering versions of %s: %w", in.Module, err)
			}
			allow = verdict.allow
			verdicts[c] = allow
		}
		if allow {
			out = append(out, v)
		}
	}
	return out, nil
}

// facts fills input.advisories and input.licenses for a pull of a version when
// the policy in force depends on them and the caller left them unset. Licenses
// come from the zip, so they are computed for zip downloads only: the go
// command reads the .mod of many versions it never downloads (module graph
// pruning), and a license rule must not turn each into a zip fetch. Nor are they
// computed while filtering a list (listing), which would read the zip of every
// listed version; a version refused for its license is refused when its zip is
// pulled, with the reason.
func (e *Engine) facts(ctx context.Context, st *state, in *Input, listing bool) error {
	if in.Module == "" || in.Version == "" || in.Action.Verb() != "pull" {
		return nil
	}
	if st.advisories && in.Advisories == nil && e.opts.Advisories != nil {
		advs, err := e.opts.Advisories(ctx, in.Module, in.Version)
		if err != nil {
			return fmt.Errorf("policy: advisories of %s@%s: %w", in.Module, in.Version, err)
		}
		in.Advisories = advs
	}
	if st.licenses && !listing && in.Action == ActionZip && in.Licenses == nil && e.opts.Licenses != nil {
		ids, err := e.opts.Licenses(ctx, in.Module, in.Version)
		if err != nil {
			return fmt.Errorf("policy: licenses of %s@%s: %w", in.Module, in.Version, err)
		}
		in.Licenses = ids
	}
	return nil
}

// cooldownClass says where a version published at t (RFC 3339, "" if unknown)
// stands against the cool-down at now (edge is now minus the cool-down, in
// RFC 3339): "" when the cool-down is off, "unknown",
// "inside" or "past". A time that does not parse is a class of its own, for the
// policy to judge.
func (st *state) cooldownClass(t string, now time.Time, edge string) string {
	if !st.versionTime {
		return ""
	}
	if t == "" {
		return "unknown"
	}
	if len(t) == len(edge) && t[len(t)-1] == 'Z' && edge[len(edge)-1] == 'Z' {
		if t > edge { // published after now-cooldown: inside
			return "inside"
		}
		if t < edge {
			return "past"
		}
		// Equal to the second: fall through to the exact comparison.
	}
	published, err := time.Parse(time.RFC3339Nano, t)
	if err != nil {
		return "unparsed " + t
	}
	if now.Before(published.Add(st.cooldown)) {
		return "inside"
	}
	return "past"
}

func (e *Engine) now(t time.Time) time.Time {
	if t.IsZero() {
		t = e.opts.Now()
	}
	return t.UTC().Truncate(e.opts.TimeResolution)
}

// decide answers from the cache or evaluates. It sorts in.Teams and in.Scopes
// (copies, if unsorted): they are sets, and the policy sees them sorted so that
// the cache key, built from the sorted sets, matches what the policy saw.
func (e *Engine) decide(ctx context.Context, st *state, in *Input, now time.Time) (verdict, bool, error) {
	if err := in.validate(); err != nil {
		return verdict{}, false, err
	}
	if !slices.IsSorted(in.Teams) {
		in.Teams = slices.Sorted(slices.Values(in.Teams))
	}
	if !slices.IsSorted(in.Scopes) {
		in.Scopes = slices.Sorted(slices.Values(in.Scopes))
	}
	// A decision is cached under its input without the time when it cannot
	// depend on the time (timedep.go), else with it; a lookup tries both. The
	// key is built on the stack and only a new entry copies it.
	var buf [192]byte
	var key []byte
	if st.cache != nil {
		key = in.appendCacheKey(buf[:0], st.used)
		if v, ok := st.cache.get(key); ok {
			return v.copy(), true, nil
		}
		if st.used&fieldTime != 0 {
			if v, ok := st.cache.get(appendTimeKey(key, now)); ok {
				return v.copy(), true, nil
			}
		}
	}
	v, timed, err := st.evaluate(ctx, in.value(now, pathPrefixes(in.Module)))
	if err != nil {
		return verdict{}, false, err
	}
	if st.cache != nil {
		if timed {
			key = appendTimeKey(key, now)
		}
		st.cache.put(string(key), v)
	}
	return v.copy(), false, nil
}

// evaluate runs the policy on input; timed reports whether its answer may
// depend on input.time (timedep.go).
func (st *state) evaluate(ctx context.Context, input ast.Value) (v verdict, timed bool, err error) {
	// OPA would start a goroutine per evaluation to watch ctx; a decision
	// takes tens of microseconds, and that goroutine's creation and wake-up
	// cost as much again on two cores. AfterFunc registers a callback instead
	// (nothing at all for a context that cannot be cancelled).
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	rs, err := st.query.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(cancel),
		// OPA's per-evaluation metrics are not read: skip allocating them.
		rego.EvalMetrics(opametrics.NoOp()),
	)
	if err != nil {
		return verdict{}, false, fmt.Errorf("policy: evaluating %s: %w", Query, err)
	}
	if len(rs) > 1 {
		return verdict{}, false, errors.New("policy: " + Query + " has several values for this input")
	}
	value, timed := st.timeDep.result(rs)
	v, err = parseResult(value)
	return v, timed, err
}

func (v verdict) copy() verdict {
	v.reasons = slices.Clone(v.reasons)
	return v
}

// parseResult checks the shape of the policy's answer; anything else is a
// policy bug and fails closed.
func parseResult(value any) (verdict, error) {
	if value == nil {
		return verdict{}, errors.New("policy: " + Query + " is undefined for this input (a policy bug: it must always decide)")
	}
	obj, ok := value.(map[string]any)
	if !ok {
		return verdict{}, fmt.Errorf("policy: %s is %T, not an object", Query, value)
	}
	allow, ok := obj["allow"].(bool)
	if !ok {
		return verdict{}, fmt.Errorf("policy: %s.allow is missing or not a boolean", Query)
	}
	var v verdict
	v.allow = allow
	if raw, ok := obj["reasons"]; ok {
		list, ok := raw.([]any)
		if !ok {
			return verdict{}, fmt.Errorf("policy: %s.reasons is not an array", Query)
		}
		for _, r := range list {
			s, ok := r.(string)
			if !ok {
				return verdict{}, fmt.Errorf("policy: %s.reasons holds a %T, not a string", Query, r)
			}
			v.reasons = append(v.reasons, s)
		}
	}
	if !v.allow && len(v.reasons) == 0 {
		v.reasons = []string{"denied by policy"}
	}
	return v, nil
}

// Watch polls the policy directory every interval (0 means
// DefaultWatchInterval) until ctx is done, and reloads when the files change.
// A change is acted on once the directory looked the same for one interval, so
// a policy is not loaded, and rejected, halfway through an editor's save or a
// multi-file checkout. Polling, unlike inotify, also works on network and
// container-mounted volumes (a Kubernetes ConfigMap swaps a symlink).
func (e *Engine) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	pending, lastScanErr := "", ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, err := fingerprint(e.dir)
		if err != nil {
			if err.Error() != lastScanErr { // once per distinct error, not every second
				e.log.Warn("policy: cannot scan the policy directory; keeping the policy in force", "dir", e.dir, "err", err)
				lastScanErr = err.Error()
			}
			continue
		}
		lastScanErr = ""
		e.reloadMu.Lock()
		unchanged := fp == e.lastFingerprint
		e.reloadMu.Unlock()
		if unchanged {
			pending = ""
			continue
		}
		if fp != pending {
			pending = fp
			continue
		}
		pending = ""
		_ = e.Reload(ctx) // logged, counted and in Status
	}
}
