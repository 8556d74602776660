package oidctest

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// loginPath is where the provider sends the browser during the authorization-code
// flow (client.LoginURL): a form asking for a user name, no password — the test
// is about the relying party, not about authenticating to the IdP.
const loginPath = "/login"

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test identity provider: sign in</title></head>
<body><main>
<h1>Test identity provider</h1>
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.}}">
<p><label for="username">User name</label> <input id="username" name="username" autocomplete="username" required></p>
<p><button type="submit" id="signin">Sign in</button></p>
</form>
</main></body></html>
`))

func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		loginPage.Execute(w, r.URL.Query().Get("id"))
	case http.MethodPost:
		id, name := r.PostFormValue("id"), strings.TrimSpace(r.PostFormValue("username"))
		if name == "" {
			http.Error(w, "user name required", http.StatusBadRequest)
			return
		}
		if err := p.store.completeLogin(id, newUser(name, nil)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The OP's callback issues the code and redirects to the client.
		http.Redirect(w, r, p.Issuer()+"/authorize/callback?id="+url.QueryEscape(id), http.StatusFound)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
