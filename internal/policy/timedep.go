package policy

import (
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// timeDependence says, for a policy that reads input.time, which decisions can
// depend on it, so that the decision cache keys only those by the (rounded)
// time and keeps every other decision across minutes.
//
// It is worked out once per loaded policy from the compiled rules. A rule
// depends on time when its head or body refers to input.time (or to input as
// a whole), or to a rule that depends on time. The rules that read input.time
// themselves are the roots; everything else that depends on time does so
// through them. Each root's body is a conjunction evaluated in the compiler's
// order; its guard is the part of the body before the first expression that
// depends on time. When a guard is false for an input, its root is undefined
// for that input at every time, so the root and everything derived from it
// answer the same whatever input.time says. The guards are evaluated in the
// same query as the decision, each as a set comprehension (query); a decision
// depends on time when some guard holds for its input (a guard depends only on
// fields that are also in the cache key).
//
// A root whose guard is empty, a function, a rule of an else chain, and any
// `with` modifier in the policy make every decision time-dependent: correct,
// if no better than keying every decision by the minute.
type timeDependence struct {
	always bool
	guards []ast.Body
}

// Variables of the decision query when it carries time guards; the prefix keeps
// them apart from any variable of the policy's own rules.
const (
	decisionVar = "__modgate_decision__"
	guardVar    = "__modgate_time_guard_"
)

// query returns the body of the decision query: Query alone, or with one
// variable per guard bound to a set that is empty when the guard is false.
func (td *timeDependence) query() ast.Body {
	ref := ast.MustParseRef(Query)
	if td == nil || len(td.guards) == 0 {
		return ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))
	}
	body := ast.NewBody(ast.Equality.Expr(ast.VarTerm(decisionVar), ast.NewTerm(ref)))
	for i, g := range td.guards {
		body.Append(ast.Equality.Expr(ast.VarTerm(guardVar+strconv.Itoa(i)), ast.SetComprehensionTerm(ast.BooleanTerm(true), g)))
	}
	return body
}

// result returns the decision's value in rs and whether the decision depends on
// the time.
func (td *timeDependence) result(rs rego.ResultSet) (any, bool) {
	if len(rs) == 0 {
		return nil, false
	}
	if td == nil || len(td.guards) == 0 {
		if len(rs[0].Expressions) == 0 {
			return nil, td != nil && td.always
		}
		return rs[0].Expressions[0].Value, td != nil && td.always
	}
	timed := td.always
	for i := range td.guards {
		if set, ok := rs[0].Bindings[guardVar+strconv.Itoa(i)].([]any); ok && len(set) > 0 {
			timed = true
		}
	}
	return rs[0].Bindings[decisionVar], timed
}

// analyseTime works out the time dependence of the compiled policy c; used is
// what inputFieldsRead found.
func analyseTime(c *ast.Compiler, used inputField) *timeDependence {
	if used&fieldTime == 0 {
		return nil
	}
	var rules []*ast.Rule
	withFound := false
	for _, m := range c.Modules {
		ast.WalkRules(m, func(r *ast.Rule) bool {
			rules = append(rules, r)
			return false
		})
		ast.WalkExprs(m, func(x *ast.Expr) bool {
			if len(x.With) > 0 {
				withFound = true
			}
			return false
		})
	}
	if withFound {
		return &timeDependence{always: true}
	}

	// depends: rules depending on time, to a fixpoint.
	depends := map[*ast.Rule]bool{}
	roots := map[*ast.Rule]bool{}
	for _, r := range rules {
		if readsTime(r.Head) || readsTime(r.Body) {
			depends[r], roots[r] = true, true
		}
	}
	refersToDependent := func(x any) bool {
		found := false
		ast.WalkRefs(x, func(ref ast.Ref) bool {
			if found || !ref[0].Equal(ast.DefaultRootDocument) {
				return found
			}
			for _, r := range c.GetRules(ref) {
				if depends[r] {
					found = true
				}
			}
			return found
		})
		return found
	}
	for changed := true; changed; {
		changed = false
		for _, r := range rules {
			if !depends[r] && (refersToDependent(r.Head) || refersToDependent(r.Body)) {
				depends[r], changed = true, true
			}
		}
	}

	td := &timeDependence{}
	for _, r := range rules {
		if !roots[r] {
			continue
		}
		if len(r.Head.Args) > 0 || r.Else != nil || isElse(rules, r) {
			return &timeDependence{always: true}
		}
		var guard ast.Body
		for _, x := range r.Body {
			if readsTime(x) || refersToDependent(x) {
				break
			}
			guard = append(guard, x.Copy())
		}
		if len(guard) == 0 {
			return &timeDependence{always: true}
		}
		td.guards = append(td.guards, guard)
	}
	return td
}

// isElse reports whether r is an else branch of one of rules.
func isElse(rules []*ast.Rule, r *ast.Rule) bool {
	for _, x := range rules {
		for e := x.Else; e != nil; e = e.Else {
			if e == r {
				return true
			}
		}
	}
	return false
}

// readsTime reports whether x refers to input.time, or to input in a way that
// may read it (input itself, or input[k] with a computed k).
func readsTime(x any) bool {
	found := false
	ast.WalkTerms(x, func(t *ast.Term) bool {
		if found {
			return true
		}
		switch v := t.Value.(type) {
		case ast.Ref:
			if !v[0].Equal(ast.InputRootDocument) {
				return false // a data ref, a call: look inside
			}
			if len(v) < 2 {
				found = true
			} else if key, ok := v[1].Value.(ast.String); !ok || key == "time" {
				found = true
			}
			for _, t := range v[1:] { // input.x[input.time]
				found = found || readsTime(t)
			}
			return true
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				found = true
			}
		}
		return found
	})
	return found
}
