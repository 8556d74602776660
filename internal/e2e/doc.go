// Package e2e holds modgate's end-to-end tests: the real modgate binary as a
// process, the real go command as its client, and real upstream fixtures.
package e2e
