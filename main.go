// Command smartauth is a standalone SMART App Launch 2.2 authorization
// server. With no arguments it serves; subcommands manage tenants, clients,
// users, patients and keys. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/logs"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a mistake in the command line; it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run is the whole program, with its environment passed in so tests can drive it.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if isHelp(args) {
		// "smartauth --help" lists the commands; "smartauth serve --help" the flags.
		printUsage(stdout)
		return 0
	}
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, env, stdout, stderr)
	case "migrate":
		err = migrate(ctx, args, env, stdout, stderr)
	case "bench":
		err = bench(ctx, args, env, stdout, stderr)
	case "help":
		if n, ok := findNoun(firstArg(args)); ok {
			printNounUsage(stdout, n)
		} else {
			printUsage(stdout)
		}
		return 0
	default:
		if n, ok := findNoun(cmd); ok {
			err = manageCommand(ctx, n, args, env, stdin, stdout, stderr)
			break
		}
		var b strings.Builder
		printUsage(&b)
		err = usageError{fmt.Sprintf("unknown command %q\n\n%s", cmd, b.String())}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "smartauth: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "smartauth: %v\n", err)
		return 1
	}
}

// isHelp reports whether args ask for help and nothing else.
func isHelp(args []string) bool {
	return len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help")
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// parseFlags parses args into fs, turning flag mistakes into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// deps is what commands share once configuration is read.
type deps struct {
	store     storage.Storage
	keys      *keys.Manager
	manage    *manage.Service
	sealer    *keys.Sealer
	masterKey []byte
	log       *slog.Logger
	version   int64
}

// open connects to the store, applies migrations and loads the master key.
func open(ctx context.Context, c config, stderr io.Writer) (*deps, error) {
	log := logs.New(stderr, c.logLevel)
	var key []byte
	var err error
	if c.masterKey != "" {
		if key, err = keys.ParseMasterKey(c.masterKey); err != nil {
			return nil, fmt.Errorf("SMARTAUTH_MASTER_KEY: %w", err)
		}
	} else {
		var created bool
		// Only the embedded default may invent a key: replicas sharing a
		// PostgreSQL database must be given the same one.
		if key, created, err = keys.LoadMasterKeyFile(c.masterKeyFile, !c.isPostgres()); err != nil {
			return nil, err
		}
		if created {
			log.Info("generated a new master key", "file", c.masterKeyFile)
		}
	}
	sealer, err := keys.NewSealer(key)
	if err != nil {
		return nil, err
	}
	store, version, err := openStore(ctx, c)
	if err != nil {
		return nil, err
	}
	km := keys.NewManager(store, sealer, nil)
	if err := checkMasterKey(ctx, store, km); err != nil {
		store.Close()
		return nil, err
	}
	return &deps{store: store, keys: km, manage: manage.New(store, km, nil), sealer: sealer, masterKey: key, log: log, version: version}, nil
}

// migrator is what both backends offer beyond storage.Storage.
type migrator interface {
	storage.Storage
	Migrate(ctx context.Context) (int64, error)
}

func openStore(ctx context.Context, c config) (storage.Storage, int64, error) {
	var s migrator
	var err error
	if c.isPostgres() {
		s, err = postgres.Open(ctx, c.databaseURL)
	} else {
		s, err = sqlite.Open(ctx, c.sqlitePath())
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open database: %w", err)
	}
	v, err := s.Migrate(ctx)
	if err != nil {
		s.Close()
		return nil, 0, fmt.Errorf("migrate database: %w", err)
	}
	return s, v, nil
}

// checkMasterKey refuses to start with a master key that cannot open the
// keys already stored: every token signature would fail later, far less clearly.
func checkMasterKey(ctx context.Context, store storage.Storage, km *keys.Manager) error {
	ts, err := store.ListTenants(ctx)
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	if len(ts) == 0 {
		return nil
	}
	if _, err := km.ActiveKey(ctx, ts[0].ID, keys.Algorithms[0]); err != nil {
		return fmt.Errorf("the master key cannot open the stored signing keys (wrong SMARTAUTH_MASTER_KEY or key file?): %w", err)
	}
	return nil
}

func migrate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := storeFlags(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := load()
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	store, v, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer store.Close()
	return printJSON(stdout, map[string]any{"migrated": true, "version": v})
}
