package derrors

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// The status is the outermost kind's, the one whose message the client gets;
// a kind deeper in the chain is a cause the outer error has already judged.
func TestStatusFollowsTheOutermostKind(t *testing.T) {
	t.Parallel()
	storeMiss := New(NotFound, "not found")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantMsg    string
	}{
		{"ok/nil", nil, http.StatusOK, ""},
		{"ok/kind-alone", New(Gone, "deleted"), http.StatusGone, "deleted"},
		{"ok/wrapped-with-context", fmt.Errorf("fetch: %w", storeMiss), http.StatusNotFound, "not found"},
		{"ok/bare-kind", fmt.Errorf("lookup: %w", Conflict), http.StatusConflict, "conflict"},
		{"ok/outer-judges-inner", WithCause(Unavailable, storeMiss, "cannot serve it now"), http.StatusServiceUnavailable, "cannot serve it now"},
		{"ok/outer-judges-inner-wrapped", fmt.Errorf("source: %w", WithCause(BadUpstream, fmt.Errorf("x: %w", storeMiss), "bad answer")), http.StatusBadGateway, "bad answer"},
		{"ok/unknown", errors.New("boom"), http.StatusInternalServerError, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Status(tt.err); got != tt.wantStatus {
				t.Errorf("Status = %d, want %d", got, tt.wantStatus)
			}
			if tt.err == nil {
				return
			}
			if got := PublicMessage(tt.err); got != tt.wantMsg {
				t.Errorf("PublicMessage = %q, want %q", got, tt.wantMsg)
			}
		})
	}
}
