package proxytest

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Module paths of StandardModules. The mod.test domain cannot resolve, so a
// request that escapes the fixture upstream fails instead of reaching the network.
const (
	// RetractPath has v1.0.0, v1.1.0 and v1.2.0; v1.2.0's go.mod retracts v1.1.0.
	RetractPath = "mod.test/retract"
	// SelfRetractPath has v1.0.0 and v1.1.0; v1.1.0's go.mod retracts v1.1.0
	// itself, so `go get SelfRetractPath@latest` resolves to v1.0.0.
	SelfRetractPath = "mod.test/selfretract"
	// HelloPath is importable (package hello, func Hello() string) and has
	// v1.0.0, v1.1.0 and the pseudo-version HelloPseudo, which @v/list omits.
	HelloPath   = "mod.test/hello"
	HelloPseudo = "v0.0.0-20230102030405-0123456789ab"
	// HelloV2Path is the major-version-2 module of HelloPath: v2.0.0, v2.1.0.
	HelloV2Path = "mod.test/hello/v2"
	// LegacyPath has no go.mod (its .mod is synthesized) and versions v1.0.0 and
	// v3.0.0+incompatible.
	LegacyPath = "mod.test/legacy"
	// UpperPath has upper-case letters: it travels as mod.test/!upper/!case.
	UpperPath = "mod.test/Upper/Case"
	// LargePath v1.0.0 holds LargeSize bytes of incompressible data in blob.bin,
	// for streaming tests; its zip is slightly larger than LargeSize.
	LargePath = "mod.test/large"
	LargeSize = 4 << 20
)

// StandardModules returns the standard fixture set (see the *Path constants).
// Every call returns equal modules: contents and times are fixed, and the large
// blob comes from a fixed-seed generator.
func StandardModules() []Module {
	day := func(n int) time.Time { return time.Date(2024, time.March, n, 12, 0, 0, 0, time.UTC) }
	goMod := func(path, extra string) string {
		return "module " + path + "\n\ngo 1.21\n" + extra
	}
	goFile := func(pkg, body string) string {
		return "// Package " + pkg + " is a proxytest fixture.\npackage " + pkg + "\n\n" + body
	}
	versionConst := func(pkg, v string) string {
		return goFile(pkg, fmt.Sprintf("// Version is the module version this file ships in.\nconst Version = %q\n", v))
	}

	var ms []Module
	for i, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		gm := goMod(RetractPath, "")
		if v == "v1.2.0" {
			gm = goMod(RetractPath, "\nretract v1.1.0 // v1.1.0 corrupts data\n")
		}
		ms = append(ms, Module{Path: RetractPath, Version: v, Time: day(1 + i), Files: map[string]string{
			"go.mod":     gm,
			"retract.go": versionConst("retract", v),
		}})
	}
	for i, v := range []string{"v1.0.0", "v1.1.0"} {
		gm := goMod(SelfRetractPath, "")
		if v == "v1.1.0" {
			gm = goMod(SelfRetractPath, "\nretract v1.1.0 // published by mistake\n")
		}
		ms = append(ms, Module{Path: SelfRetractPath, Version: v, Time: day(1 + i), Files: map[string]string{
			"go.mod":         gm,
			"selfretract.go": versionConst("selfretract", v),
		}})
	}
	for i, v := range []string{HelloPseudo, "v1.0.0", "v1.1.0"} {
		m := Module{Path: HelloPath, Version: v, Files: map[string]string{
			"go.mod":   goMod(HelloPath, ""),
			"hello.go": goFile("hello", fmt.Sprintf("// Hello greets from version %s.\nfunc Hello() string { return %q }\n", v, "hello from "+v)),
			"README":   "hello " + v + "\n",
		}}
		if v != HelloPseudo { // a pseudo-version's time is the one it encodes
			m.Time = day(4 + i)
		}
		ms = append(ms, m)
	}
	for i, v := range []string{"v2.0.0", "v2.1.0"} {
		ms = append(ms, Module{Path: HelloV2Path, Version: v, Time: day(7 + i), Files: map[string]string{
			"go.mod":   goMod(HelloV2Path, ""),
			"hello.go": goFile("hello", fmt.Sprintf("// Hello greets from version %s.\nfunc Hello() string { return %q }\n", v, "hello from "+v)),
		}})
	}
	for i, v := range []string{"v1.0.0", "v3.0.0+incompatible"} {
		ms = append(ms, Module{Path: LegacyPath, Version: v, Time: day(9 + i), Files: map[string]string{
			"legacy.go": versionConst("legacy", v),
		}})
	}
	ms = append(ms, Module{Path: UpperPath, Version: "v1.0.0", Time: day(11), Files: map[string]string{
		"go.mod":  goMod(UpperPath, ""),
		"case.go": versionConst("upper", "v1.0.0"),
	}})
	ms = append(ms, Module{Path: LargePath, Version: "v1.0.0", Time: day(12), Files: map[string]string{
		"go.mod":   goMod(LargePath, ""),
		"large.go": goFile("large", "// Blob is the name of the data file.\nconst Blob = \"blob.bin\"\n"),
		"blob.bin": string(incompressible(LargeSize)),
	}})
	return ms
}

// incompressible returns n bytes from a fixed-seed ChaCha8 stream: random enough
// that deflate cannot shrink them, identical on every call.
func incompressible(n int) []byte {
	var seed [32]byte
	copy(seed[:], "modgate proxytest large fixture")
	b := make([]byte, n)
	rand.NewChaCha8(seed).Read(b)
	return b
}
