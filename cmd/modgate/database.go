package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/modgate/modgate/internal/config"
)

// errNoDatabase is what every command that needs PostgreSQL says when it finds none.
var errNoDatabase = errors.New("no database: pass --config /etc/modgate/modgate.yaml (or set MODGATE_CONFIG), --database-url URL, or set MODGATE_DATABASE_URL")

// dbFlags are the flags of every command that needs PostgreSQL.
type dbFlags struct {
	url, config *string
}

// addDatabaseFlags adds --database-url and --config to fs. Neither default is
// shown in --help: the URL may carry a password.
func addDatabaseFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		url:    fs.String("database-url", "", "PostgreSQL URL (default: the database of --config, else $MODGATE_DATABASE_URL)"),
		config: fs.String("config", "", "modgate configuration file whose database to use, as `modgate serve` does (default $MODGATE_CONFIG)"),
	}
}

// resolve finds the database the way `modgate serve` does: --database-url wins;
// else the configuration file (--config or $MODGATE_CONFIG) with its database.url,
// database.url_file or $MODGATE_DATABASE_URL; else $MODGATE_DATABASE_URL.
func (d dbFlags) resolve() (string, error) {
	if *d.url != "" {
		return *d.url, nil
	}
	path := *d.config
	if path == "" {
		path = os.Getenv("MODGATE_CONFIG")
	}
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			return "", err
		}
		u, err := cfg.DatabaseURL()
		if err != nil {
			return "", err
		}
		if u == "" {
			return "", fmt.Errorf("%s configures no database (database.url, database.url_file or $MODGATE_DATABASE_URL)", path)
		}
		return u, nil
	}
	if u := os.Getenv("MODGATE_DATABASE_URL"); u != "" {
		return u, nil
	}
	return "", errNoDatabase
}
