package publish

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/derrors"
)

// With the database unreachable, publish and delete are 503s whose one line says
// what could not be done and why, and a publish stores nothing.
func TestDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	r, dir := newTestRegistry(t)
	const mod = "corp.example/outage"
	c, f := checkedUpload(t, r, mod, "v1.0.0", "a")
	r.pool.Close()
	ctx := context.Background()

	_, _, err := r.Publish(ctx, c, f, "ann")
	if derrors.Status(err) != http.StatusServiceUnavailable {
		t.Fatalf("Publish: status %d (%v), want 503", derrors.Status(err), err)
	}
	want := "cannot publish corp.example/outage@v1.0.0 now (nothing was stored): modgate's database is unreachable; try again when it is back"
	if got := derrors.PublicMessage(err); got != want {
		t.Errorf("Publish: public message %q, want %q", got, want)
	}
	if objs := publishedObjects(t, dir); len(objs) != 0 {
		t.Errorf("objects stored by a publish refused for the outage: %v", objs)
	}

	_, err = r.Delete(ctx, mod, "v1.0.0", "admin", "test")
	if !errors.Is(err, derrors.Unavailable) || !strings.HasPrefix(derrors.PublicMessage(err), "cannot delete corp.example/outage@v1.0.0 now: modgate's database is unreachable") {
		t.Errorf("Delete: %v (%q), want 503 naming the delete", err, derrors.PublicMessage(err))
	}
}
