package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
)

var pageNames = []string{"signin", "error", "events", "module", "subject", "policy", "file", "health", "affected"}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join": strings.Join,
	"dash": func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	},
	"percent": func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"bytes":   humanBytes,
}

func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parsing templates: %w", err)
		}
		pages[name] = t
	}
	return pages, nil
}

// page is what every template gets: the layout's needs and the page's data.
type page struct {
	Title  string
	Nav    string // the active navigation entry
	Caller *caller
	Data   any
}

// render executes the page into a buffer first, so a template error becomes a
// clean 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	var buf bytes.Buffer
	p := page{Title: title, Nav: name, Caller: callerFrom(r.Context()), Data: data}
	if err := c.pages[name].Execute(&buf, p); err != nil {
		c.log.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, title, msg string, cl *caller) {
	if cl != nil && callerFrom(r.Context()) == nil {
		r = r.WithContext(contextWithCaller(r, cl))
	}
	c.render(w, r, status, "error", title, struct {
		Status  int
		Message string
	}{status, msg})
}

// publicMessage is what a user may see of err: derrors' public line, never SQL or
// paths.
func publicMessage(err error) string {
	if errors.Is(err, derrors.InvalidArgument) {
		return derrors.PublicMessage(err)
	}
	return "the audit trail could not be read; try again shortly"
}

var (
	filterActions  = []string{"list", "info", "mod", "zip", "latest", "sumdb", "publish", "delete", "audit-read", "invalid-request"}
	filterOutcomes = []string{"served", "denied", "unauthenticated", "not_found", "gone", "invalid", "error"}
	policyActions  = []policy.Action{policy.ActionZip, policy.ActionMod, policy.ActionInfo, policy.ActionList, policy.ActionLatest, policy.ActionSumDB, policy.ActionPublish, policy.ActionDelete, policy.ActionAuditRead, policy.ActionAdmin}
)

// filterParams are the filter fields of a history query string.
var filterParams = []string{"module", "version", "subject", "team", "action", "outcome", "since", "until"}

// Page sizes of the history: ?limit=N picks another, up to maxPageSize.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

func pageSize(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return defaultPageSize
	}
	return min(n, maxPageSize)
}

// maxTrail bounds the previous-page cursors carried in links; beyond it,
// "previous" returns to the first page.
const maxTrail = 40

type eventsData struct {
	Form     url.Values
	Actions  []string
	Outcomes []string
	Rows     []audit.Row
	Error    string
	Next     string // URL of the next (older) page
	Prev     string // URL of the previous (newer) page
	First    string
	Export   string
	Page     int
}

func (c *Console) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := eventsData{Form: q, Actions: filterActions, Outcomes: filterOutcomes}
	if c.opts.DB == nil {
		d.Error = errNoAudit.Error()
		c.render(w, r, http.StatusOK, "events", "Pull history", d)
		return
	}
	fq := url.Values{}
	for _, k := range filterParams {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			fq.Set(k, v)
		}
	}
	f, err := audit.ParseFilter(fq, c.now())
	if err != nil {
		d.Error = publicMessage(err)
		c.render(w, r, http.StatusBadRequest, "events", "Pull history", d)
		return
	}
	f.Limit = pageSize(q.Get("limit"))
	if f.Limit != defaultPageSize {
		fq.Set("limit", strconv.Itoa(f.Limit)) // kept in the paging links
	}
	f.Cursor = q.Get("cursor")
	rows, next, err := audit.Query(r.Context(), c.opts.DB, f)
	if err != nil {
		c.log.Error("console: audit query", "err", err)
		d.Error = publicMessage(err)
		c.render(w, r, http.StatusBadRequest, "events", "Pull history", d)
		return
	}
	c.recordRead(r)
	d.Rows = rows
	var trail []string
	if t := q.Get("trail"); t != "" {
		trail = strings.Split(t, " ")
	}
	d.Page = len(trail) + 1
	link := func(cursor string, trail []string) string {
		v := url.Values{}
		for k, vs := range fq {
			v[k] = vs
		}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		if len(trail) > 0 {
			v.Set("trail", strings.Join(trail, " "))
		}
		return Prefix + "/events?" + v.Encode()
	}
	if next != "" {
		cur := f.Cursor
		if cur == "" {
			cur = "-" // the first page has no cursor
		}
		t := append(slices.Clone(trail), cur)
		if len(t) > maxTrail {
			t = t[len(t)-maxTrail:]
		}
		d.Next = link(next, t)
	}
	if f.Cursor != "" {
		prev := ""
		var rest []string
		if len(trail) > 0 {
			prev, rest = trail[len(trail)-1], trail[:len(trail)-1]
		}
		if prev == "-" {
			prev = ""
		}
		d.Prev = link(prev, rest)
		d.First = link("", nil)
	}
	d.Export = Prefix + "/events.csv?" + fq.Encode()
	c.render(w, r, http.StatusOK, "events", "Pull history", d)
}

// handleExport streams every row of the filtered set as CSV, page after page —
// the same rows, columns and order as `modgate audit query --all --format csv`.
func (c *Console) handleExport(w http.ResponseWriter, r *http.Request) {
	if c.opts.DB == nil {
		c.renderError(w, r, http.StatusNotFound, "No audit trail", errNoAudit.Error(), nil)
		return
	}
	fq := url.Values{}
	for _, k := range filterParams {
		if v := strings.TrimSpace(r.URL.Query().Get(k)); v != "" {
			fq.Set(k, v)
		}
	}
	f, err := audit.ParseFilter(fq, c.now())
	if err != nil {
		c.renderError(w, r, http.StatusBadRequest, "Export failed", publicMessage(err), nil)
		return
	}
	f.Limit = 1000
	rows, next, err := audit.Query(r.Context(), c.opts.DB, f)
	if err != nil {
		c.log.Error("console: export", "err", err)
		c.renderError(w, r, http.StatusBadRequest, "Export failed", publicMessage(err), nil)
		return
	}
	c.recordRead(r)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="modgate-audit-`+c.now().UTC().Format("20060102T150405Z")+`.csv"`)
	for page := 0; ; page++ {
		if err := audit.Write(w, audit.FormatCSV, rows, page == 0); err != nil {
			return // the client went away
		}
		if next == "" {
			return
		}
		f.Cursor = next
		if rows, next, err = audit.Query(r.Context(), c.opts.DB, f); err != nil {
			// Headers are sent: cut the response so the file is visibly
			// incomplete rather than silently short.
			c.log.Error("console: export aborted", "err", err)
			panic(http.ErrAbortHandler)
		}
	}
}

type moduleData struct {
	Module   string
	Versions []audit.VersionSeen
	Rows     []audit.Row
	More     bool
	Search   string
	Error    string
}

func (c *Console) handleModule(w http.ResponseWriter, r *http.Request) {
	mod := strings.TrimSpace(r.URL.Query().Get("path"))
	d := moduleData{Module: mod, Search: Prefix + "/events?" + url.Values{"module": {mod}}.Encode()}
	if mod == "" {
		c.renderError(w, r, http.StatusBadRequest, "No module", "Name a module: /ui/module?path=example.com/mod", nil)
		return
	}
	if c.opts.DB == nil {
		d.Error = errNoAudit.Error()
		c.render(w, r, http.StatusOK, "module", mod, d)
		return
	}
	var err error
	if d.Versions, err = audit.ModuleVersions(r.Context(), c.opts.DB, mod); err == nil {
		f := audit.WhoPulled(mod, "")
		f.Limit = 50
		var next string
		d.Rows, next, err = audit.Query(r.Context(), c.opts.DB, f)
		d.More = next != ""
		c.recordRead(r)
	}
	if err != nil {
		c.log.Error("console: module page", "err", err)
		d.Error = publicMessage(err)
	}
	c.render(w, r, http.StatusOK, "module", mod, d)
}

type subjectData struct {
	Subject  string
	Teams    []string
	Methods  []string
	Rows     []audit.Row
	More     bool
	Search   string
	Error    string
	LastSeen time.Time
}

func (c *Console) handleSubject(w http.ResponseWriter, r *http.Request) {
	sub := strings.TrimSpace(r.URL.Query().Get("name"))
	if sub == "" {
		c.renderError(w, r, http.StatusBadRequest, "No subject", "Name a subject: /ui/subject?name=alice@example.com", nil)
		return
	}
	d := subjectData{Subject: sub, Search: Prefix + "/events?" + url.Values{"subject": {sub}}.Encode()}
	if c.opts.DB == nil {
		d.Error = errNoAudit.Error()
		c.render(w, r, http.StatusOK, "subject", sub, d)
		return
	}
	f := audit.Filter{Subject: sub, Limit: 100}
	rows, next, err := audit.Query(r.Context(), c.opts.DB, f)
	if err != nil {
		c.log.Error("console: subject page", "err", err)
		d.Error = publicMessage(err)
		c.render(w, r, http.StatusOK, "subject", sub, d)
		return
	}
	c.recordRead(r)
	d.Rows, d.More = rows, next != ""
	for _, row := range rows {
		for _, t := range row.Teams {
			if !slices.Contains(d.Teams, t) {
				d.Teams = append(d.Teams, t)
			}
		}
		if row.AuthMethod != "" && !slices.Contains(d.Methods, row.AuthMethod) {
			d.Methods = append(d.Methods, row.AuthMethod)
		}
	}
	slices.Sort(d.Teams)
	slices.Sort(d.Methods)
	if len(rows) > 0 {
		d.LastSeen = rows[0].Time
	}
	c.render(w, r, http.StatusOK, "subject", sub, d)
}

type policyFile struct {
	Name string
	Size int64
	Kind string // "data", "policy", "test"
}

type whatIf struct {
	Subject, Teams, Method, Action, Module, Version string
}

type policyData struct {
	Enabled  bool
	Status   policy.Status
	Files    []policyFile
	FilesErr string
	Actions  []policy.Action
	Methods  []identity.Method
	Form     whatIf
	Result   *policy.Decision
	Route    policy.Route
	Error    string
}

func (c *Console) policyData() policyData {
	d := policyData{
		Enabled: c.opts.PolicyStatus != nil,
		Actions: policyActions,
		Methods: []identity.Method{identity.MethodOIDC, identity.MethodMTLS, identity.MethodToken},
		Form:    whatIf{Method: string(identity.MethodOIDC), Action: string(policy.ActionZip)},
	}
	if d.Enabled {
		d.Status = c.opts.PolicyStatus()
		files, err := c.policyFiles()
		if err != nil {
			c.log.Error("console: listing policy files", "err", err)
			d.FilesErr = "the policy directory could not be read"
		}
		d.Files = files
	}
	return d
}

func (c *Console) handlePolicy(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "policy", "Policy", c.policyData())
}

// handleWhatIf evaluates the policy for the question in the form, exactly as a
// request would be decided, and shows the answer with every reason. It only
// reads: it is a POST for its CSRF token, so no other site can probe the policy
// through an auditor's browser.
func (c *Console) handleWhatIf(w http.ResponseWriter, r *http.Request) {
	d := c.policyData()
	d.Form = whatIf{
		Subject: strings.TrimSpace(r.PostFormValue("subject")),
		Teams:   strings.TrimSpace(r.PostFormValue("teams")),
		Method:  r.PostFormValue("method"),
		Action:  r.PostFormValue("action"),
		Module:  strings.TrimSpace(r.PostFormValue("module")),
		Version: strings.TrimSpace(r.PostFormValue("version")),
	}
	if c.opts.Policy == nil {
		d.Error = "no policy is configured: every authenticated caller may pull anything"
		c.render(w, r, http.StatusOK, "policy", "Policy", d)
		return
	}
	id := &identity.Identity{Subject: d.Form.Subject, Method: identity.Method(d.Form.Method)}
	for _, t := range strings.Split(d.Form.Teams, ",") {
		if t = strings.TrimSpace(t); t != "" {
			id.Teams = append(id.Teams, t)
		}
	}
	in := policy.NewInput(id, policy.Action(d.Form.Action))
	in.Module, in.Version = d.Form.Module, d.Form.Version
	if c.opts.Route != nil && in.Module != "" {
		in.Route = c.opts.Route(in.Module)
		d.Route = in.Route
	}
	in.ClientAddr = clientIP(r)
	dec, err := c.opts.Policy.Decide(r.Context(), in)
	if err != nil {
		d.Error = "the question could not be decided: " + derrors.PublicMessage(err)
		c.render(w, r, http.StatusBadRequest, "policy", "Policy", d)
		return
	}
	d.Result = &dec
	c.render(w, r, http.StatusOK, "policy", "Policy", d)
}

// policyFiles lists the files the policy engine reads (Rego, YAML, JSON; no
// hidden files), relative to the policy directory.
func (c *Console) policyFiles() ([]policyFile, error) {
	dir := c.opts.PolicyDir
	var out []policyFile
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), ".") && path != dir {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return nil
		}
		kind := ""
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			kind = "data"
		case ".rego":
			kind = "policy"
			if strings.HasSuffix(e.Name(), "_test.rego") {
				kind = "test"
			}
		default:
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, policyFile{Name: filepath.ToSlash(rel), Size: info.Size(), Kind: kind})
		return nil
	})
	return out, err
}

// maxFileView bounds a policy file shown in the browser.
const maxFileView = 1 << 20

type fileData struct {
	Name      string
	Kind      string
	Content   string
	Truncated bool
}

// handlePolicyFile shows one policy file read-only. Only names the listing
// contains are served, so no path can reach outside the policy directory.
func (c *Console) handlePolicyFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	files, err := c.policyFiles()
	if c.opts.PolicyStatus == nil || err != nil {
		c.renderError(w, r, http.StatusNotFound, "Not found", "No such policy file.", nil)
		return
	}
	i := slices.IndexFunc(files, func(f policyFile) bool { return f.Name == name })
	if i < 0 {
		c.renderError(w, r, http.StatusNotFound, "Not found", "No such policy file.", nil)
		return
	}
	data, err := os.ReadFile(filepath.Join(c.opts.PolicyDir, filepath.FromSlash(name)))
	if err != nil {
		c.renderError(w, r, http.StatusNotFound, "Not found", "The file could not be read.", nil)
		return
	}
	d := fileData{Name: name, Kind: files[i].Kind}
	if len(data) > maxFileView {
		data, d.Truncated = data[:maxFileView], true
	}
	d.Content = string(data)
	c.render(w, r, http.StatusOK, "file", name, d)
}

func humanBytes(n float64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", n/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}
