package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestServePprof(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		addr    string
		wantErr string
	}{
		{name: "ok/ipv4-loopback", addr: "127.0.0.1:0"},
		{name: "ok/localhost", addr: "localhost:0"},
		{name: "fail/all-interfaces", addr: "0.0.0.0:0", wantErr: "not a loopback address"},
		{name: "fail/empty-host", addr: ":0", wantErr: "not a loopback address"},
		{name: "fail/other-address", addr: "192.0.2.1:6060", wantErr: "not a loopback address"},
		{name: "fail/no-port", addr: "127.0.0.1", wantErr: "--pprof-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bound, stop, err := servePprof(tt.addr, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			resp, err := http.Get("http://" + bound + "/debug/pprof/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(body) == 0 {
				t.Errorf("GET /debug/pprof/cmdline: %s, %d bytes", resp.Status, len(body))
			}
		})
	}
}
