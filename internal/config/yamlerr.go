package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file turns the YAML decoder's errors into ones an operator can act on: each
// names the key (private.routes[0].pattern) and the form it wants, not Go types
// ("line 18: cannot unmarshal !!seq into string").

// keyIndex maps a line of the file to the keys whose key or value starts on it.
type keyIndex map[int][]keyAt

type keyAt struct {
	path string
	tag  string // the value node's tag: !!str, !!seq, !!map, ...
}

// indexKeys walks the document and records the dotted path of every value.
func indexKeys(doc *yaml.Node) keyIndex {
	idx := keyIndex{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				idx[k.Line] = append(idx[k.Line], keyAt{p, v.ShortTag()})
				if v.Line != k.Line {
					idx[v.Line] = append(idx[v.Line], keyAt{p, v.ShortTag()})
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				idx[c.Line] = append(idx[c.Line], keyAt{p, c.ShortTag()})
				walk(c, p)
			}
		}
	}
	walk(doc, "")
	return idx
}

var (
	lineRE     = regexp.MustCompile(`^line (\d+): (.*)$`)
	unmarshalR = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
	unknownRE  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// explain rewrites one decoder message ("line 18: cannot unmarshal !!seq into
// string") as "line 18: private.patterns: want a string, got a list".
func (idx keyIndex) explain(msg string) string {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	keys := idx[line]
	if u := unknownRE.FindStringSubmatch(rest); u != nil {
		for _, k := range keys {
			if k.path == u[1] || strings.HasSuffix(k.path, "."+u[1]) {
				return fmt.Sprintf("line %d: unknown key %s (see docs/config.md)", line, k.path)
			}
		}
		return fmt.Sprintf("line %d: unknown key %s (see docs/config.md)", line, u[1])
	}
	if u := unmarshalR.FindStringSubmatch(rest); u != nil {
		key := ""
		for _, k := range keys {
			if k.tag == u[1] {
				key = k.path // the innermost value of that kind on the line
			}
		}
		if key == "" && len(keys) > 0 {
			key = keys[len(keys)-1].path
		}
		got := kindName(u[1])
		if u[2] != "" {
			got += " " + strconv.Quote(u[2])
		}
		if key == "" {
			return fmt.Sprintf("line %d: want %s, got %s", line, goTypeName(u[3]), got)
		}
		return fmt.Sprintf("line %d: %s: want %s, got %s", line, key, goTypeName(u[3]), got)
	}
	// Messages from our own unmarshalers (Duration) say what they want; add the key.
	if len(keys) > 0 {
		return fmt.Sprintf("line %d: %s: %s", line, keys[len(keys)-1].path, rest)
	}
	return msg
}

// explainError rewrites every message of a decoding error.
func (idx keyIndex) explainError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			msgs[i] = idx.explain(e)
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return errors.New(idx.explain(err.Error()))
}

func kindName(tag string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!str":
		return "a string"
	case "!!int":
		return "a number"
	case "!!float":
		return "a number"
	case "!!bool":
		return "true/false"
	case "!!null":
		return "nothing"
	}
	return tag
}

func goTypeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "time.Duration":
		return "a duration (e.g. 30s, 5m)"
	}
	return "a mapping" // a struct type: a section of keys
}

// listKeys are the GOPRIVATE-style keys that take a comma-separated string or a
// YAML list of patterns.
func listKeys(c *Config) map[string]*string {
	m := map[string]*string{"private.patterns": &c.Private.Patterns}
	for i := range c.Private.Routes {
		m[fmt.Sprintf("private.routes[%d].pattern", i)] = &c.Private.Routes[i].Pattern
	}
	return m
}

// joinListKeys sets every list-or-string key written as a YAML list to its
// comma-separated form and returns the lines of those lists, whose "cannot
// unmarshal !!seq into string" the decoder reported and the caller drops.
func joinListKeys(doc *yaml.Node, c *Config) map[int]bool {
	lines := map[int]bool{}
	keys := listKeys(c)
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, ch := range n.Content {
				walk(ch, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if dst, ok := keys[p]; ok && v.Kind == yaml.SequenceNode {
					var items []string
					scalars := true
					for _, it := range v.Content {
						if it.Kind != yaml.ScalarNode {
							scalars = false
							break
						}
						if s := strings.TrimSpace(it.Value); s != "" {
							items = append(items, s)
						}
					}
					if scalars {
						*dst = strings.Join(items, ",")
						lines[v.Line] = true
					}
					continue
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, ch := range n.Content {
				walk(ch, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(doc, "")
	return lines
}

// dropListErrors removes the decoder's complaints about lists joinListKeys took.
func dropListErrors(err error, lines map[int]bool) error {
	var te *yaml.TypeError
	if len(lines) == 0 || !errors.As(err, &te) {
		return err
	}
	var keep []string
	for _, e := range te.Errors {
		if m := lineRE.FindStringSubmatch(e); m != nil && strings.HasPrefix(m[2], "cannot unmarshal !!seq into string") {
			if l, _ := strconv.Atoi(m[1]); lines[l] {
				continue
			}
		}
		keep = append(keep, e)
	}
	if len(keep) == 0 {
		return nil
	}
	return &yaml.TypeError{Errors: keep}
}
