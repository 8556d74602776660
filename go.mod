module github.com/modgate/modgate

go 1.26
