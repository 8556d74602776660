package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// APIPrefix is where the publish API lives on a modgate server.
const APIPrefix = "/api/v1/modules/"

// APIPath returns the API path of modulePath@version, case-encoded as in the
// GOPROXY protocol: /api/v1/modules/github.com/!azure/x/@v/v1.0.0.
func APIPath(modulePath, version string) (string, error) {
	escMod, err := module.EscapePath(modulePath)
	if err != nil {
		return "", err
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return "", err
	}
	return APIPrefix + escMod + "/@v/" + escVer, nil
}

// Result is the server's answer to a successful publish: the JSON body of 201
// Created and 200 OK.
type Result struct {
	Module      string    `json:"module"`
	Version     string    `json:"version"`
	Hash        string    `json:"hash"`     // h1: of the zip, as go.sum records it
	ModHash     string    `json:"mod_hash"` // h1: of go.mod
	Size        int64     `json:"size"`
	Publisher   string    `json:"publisher"`
	PublishedAt time.Time `json:"published_at"`
	// Created is false when the same content was already published.
	Created bool `json:"created"`
}

// DeleteRequest is the JSON body of DELETE /api/v1/modules/{module}/@v/{version}.
type DeleteRequest struct {
	Reason string `json:"reason"`
}

// ModulePath reads the module path from dir/go.mod.
func ModulePath(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	p := modfile.ModulePath(data)
	if p == "" {
		return "", fmt.Errorf("publish: %s has no module directive", filepath.Join(dir, "go.mod"))
	}
	return p, nil
}

// CreateZip writes the module zip of dir for modulePath@version to a temporary
// file and returns it, positioned at its start; the caller removes it. The files
// are chosen exactly as the go command chooses them (golang.org/x/mod/zip:
// no VCS directories, nested modules, vendor/ outside the rules, symlinks).
func CreateZip(dir, modulePath, version string) (*os.File, error) {
	if err := CheckVersion(modulePath, version); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp("", "modgate-publish-*.zip")
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := modzip.CreateFromDir(f, module.Version{Path: modulePath, Version: version}, dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("publish: creating the module zip: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("publish: %w", err)
	}
	return f, nil
}

// Client talks to a modgate's publish API.
type Client struct {
	// BaseURL is the modgate URL, e.g. https://modgate.corp.example.
	BaseURL string
	// Token is sent as a Bearer token (an OIDC ID token or a modgate API token).
	Token string
	HTTP  *http.Client
}

func (c *Client) do(ctx context.Context, method, modulePath, version string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	p, err := APIPath(modulePath, version)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	base, err := url.Parse(strings.TrimSuffix(c.BaseURL, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("publish: invalid proxy URL %q", c.BaseURL)
	}
	req, err := http.NewRequestWithContext(ctx, method, base.String()+p, body)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if size >= 0 {
		req.ContentLength = size
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("publish: %s %s: %w", method, base.Host+p, err)
	}
	return resp, nil
}

// Publish uploads the module zip zipFile for modulePath@version.
func (c *Client) Publish(ctx context.Context, modulePath, version string, zipFile *os.File) (Result, error) {
	st, err := zipFile.Stat()
	if err != nil {
		return Result{}, fmt.Errorf("publish: %w", err)
	}
	resp, err := c.do(ctx, http.MethodPut, modulePath, version, io.NewSectionReader(zipFile, 0, st.Size()), st.Size(), "application/zip")
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return Result{}, responseError(resp)
	}
	var res Result
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&res); err != nil {
		return Result{}, fmt.Errorf("publish: decoding the server's answer: %w", err)
	}
	return res, nil
}

// Delete deletes modulePath@version with reason.
func (c *Client) Delete(ctx context.Context, modulePath, version, reason string) error {
	body, err := json.Marshal(DeleteRequest{Reason: reason})
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodDelete, modulePath, version, bytes.NewReader(body), int64(len(body)), "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return responseError(resp)
	}
	return nil
}

// StatusError is a refusal from the server: its status and one-line reason.
type StatusError struct {
	Status int
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Reason)
}

func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return &StatusError{Status: resp.StatusCode, Reason: strings.TrimSpace(string(b))}
}
