// Package migrations holds modgate's PostgreSQL schema as numbered SQL files
// (NNNN_name.sql), applied in order by internal/database. The files live here, at the
// top of the tree where operators expect them, and are embedded because go:embed
// cannot reach a parent directory.
//
// Numbers are permanent: never edit or renumber an applied file, add a new one.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
