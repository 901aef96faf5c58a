// sigil-exec puts the values Sigil injected into a pod into a command's environment and then
// becomes that command (execve): same PID, signals delivered to the app directly, no process
// left in between.
//
//	sigil-exec [--] <command> [args...]
//	sigil-exec --copy-to <dir>
//
// The environment file ($SIGIL_EXEC_ENV_FILE, default /sigil/env/env) holds KEY=VALUE entries
// separated by NUL bytes, so a value may hold newlines and '='. Its entries override the
// inherited environment; SIGIL_EXEC_ENV_FILE itself is not passed on. The command is looked up
// in the PATH of the resulting environment, as env(1) does.
//
// The init container places this binary in a shared in-memory volume with --copy-to, and the
// webhook points the app container's command at it.
//
// Exit status when it cannot become the command: 127 command not found, 126 found but not
// executable, 1 anything else (no command, unreadable or malformed file). Messages never include
// a value from the file.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	envFileVar     = "SIGIL_EXEC_ENV_FILE"
	defaultEnvFile = "/sigil/env/env"
	// An execve'd environment cannot be larger than the kernel's argument limit anyway.
	maxEnvFileBytes = 8 << 20
	// Used when the environment has no PATH, as glibc's execvp does.
	defaultPath = "/usr/local/bin:/usr/bin:/bin"
)

const (
	exitFailure       = 1
	exitNotExecutable = 126
	exitNotFound      = 127
)

// failure is an error with the exit status it ends the process with.
type failure struct {
	status int
	msg    string
}

func (f *failure) Error() string { return f.msg }

func fail(status int, format string, args ...any) *failure {
	return &failure{status: status, msg: fmt.Sprintf(format, args...)}
}

func main() {
	err := run(os.Args[1:], os.Environ())
	if err == nil {
		return // --copy-to or --help done
	}
	var f *failure
	if !errors.As(err, &f) {
		f = fail(exitFailure, "%v", err)
	}
	fmt.Fprintf(os.Stderr, "sigil-exec: %s\n", f.msg)
	os.Exit(f.status)
}

const usage = `usage: sigil-exec [--] <command> [args...]
       sigil-exec --copy-to <dir>
Runs <command> (looked up in PATH) with the KEY=VALUE entries of $SIGIL_EXEC_ENV_FILE
(default /sigil/env/env, NUL-separated) added to its environment, in place of itself.
--copy-to writes a copy of this executable to <dir>/sigil-exec (mode 0555).
`

// run returns only on failure or after --copy-to and --help: on success the process has
// become the command.
func run(args []string, environ []string) error {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Print(usage)
		return nil
	}
	if len(args) > 0 && args[0] == "--copy-to" {
		if len(args) != 2 || args[1] == "" {
			return fail(exitFailure, "usage: sigil-exec --copy-to <dir>")
		}
		self, err := os.Executable()
		if err != nil {
			return fail(exitFailure, "cannot find its own executable: %v", err)
		}
		if err := copyExecutable(self, filepath.Join(args[1], "sigil-exec")); err != nil {
			return fail(exitFailure, "%v", err)
		}
		return nil
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 || args[0] == "" {
		return fail(exitFailure, "usage: sigil-exec [--] <command> [args...] (no command given)")
	}

	path := defaultEnvFile
	if p, ok := lookup(environ, envFileVar); ok && p != "" {
		path = p
	}
	entries, err := readEnvFile(path)
	if err != nil {
		return err
	}
	env := mergeEnv(environ, entries)
	return execvp(args[0], args, env)
}

// readEnvFile reads and parses the NUL-separated KEY=VALUE file at path.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(exitFailure, "env file: %v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEnvFileBytes+1))
	if err != nil {
		return nil, fail(exitFailure, "env file: %v", err)
	}
	if len(data) > maxEnvFileBytes {
		return nil, fail(exitFailure, "env file %s: larger than %d bytes", path, maxEnvFileBytes)
	}
	entries, err := parseEnv(data)
	if err != nil {
		return nil, fail(exitFailure, "env file %s: %v", path, err)
	}
	return entries, nil
}

// parseEnv splits NUL-separated KEY=VALUE entries. Empty entries (a trailing NUL, an empty file)
// are skipped. Errors name the entry by position only: its text may be part of a value.
func parseEnv(data []byte) ([]string, error) {
	var entries []string
	for i, entry := range strings.Split(string(data), "\x00") {
		if entry == "" {
			continue
		}
		key, _, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("entry %d has no '='", i+1)
		}
		if !validKey(key) {
			return nil, fmt.Errorf("entry %d: the name before '=' is not [A-Za-z_][A-Za-z0-9_]*", i+1)
		}
		entries = append(entries, entry)
	}
	return entries, nil
}

func validKey(key string) bool {
	if key == "" {
		return false
	}
	for i, c := range key {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// mergeEnv returns environ without SIGIL_EXEC_ENV_FILE, with entries overriding variables of
// the same name (in place, keeping the order) and the new ones appended; for a name given more
// than once the last one counts.
func mergeEnv(environ []string, entries []string) []string {
	var out []string
	index := map[string]int{}
	set := func(kv string) {
		key, _, _ := strings.Cut(kv, "=")
		if i, ok := index[key]; ok {
			out[i] = kv
			return
		}
		index[key] = len(out)
		out = append(out, kv)
	}
	for _, kv := range environ {
		if key, _, _ := strings.Cut(kv, "="); key != envFileVar {
			set(kv)
		}
	}
	for _, kv := range entries {
		set(kv)
	}
	return out
}

func lookup(environ []string, key string) (string, bool) {
	value, found := "", false
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value, found = v, true
		}
	}
	return value, found
}

// execvp becomes the command: a name with a slash is run as it is, any other is tried in each
// directory of PATH in turn (an empty element is the current directory), like execvp(3) except
// that a file that is not a valid executable is not handed to /bin/sh.
func execvp(name string, argv []string, env []string) error {
	if strings.Contains(name, "/") {
		return execFailure(name, syscall.Exec(name, argv, env))
	}
	pathVar, ok := lookup(env, "PATH")
	if !ok {
		pathVar = defaultPath
	}
	var denied error
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			dir = "."
		}
		err := syscall.Exec(filepath.Join(dir, name), argv, env)
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ESTALE),
			errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ETIMEDOUT):
			continue // not here; execvp tries the next directory
		case errors.Is(err, syscall.EACCES):
			denied = err // remembered: reported if no later directory has it
			continue
		default:
			return execFailure(name, err)
		}
	}
	if denied != nil {
		return execFailure(name, denied)
	}
	return fail(exitNotFound, "%s: command not found in PATH", name)
}

func execFailure(name string, err error) error {
	if errors.Is(err, syscall.ENOENT) {
		return fail(exitNotFound, "%s: command not found", name)
	}
	return fail(exitNotExecutable, "%s: cannot execute: %v", name, err)
}

// copyExecutable writes a copy of src to dst (mode 0555) through a temporary file in the same
// directory and a rename, so a restarted init container never leaves a half-written binary.
func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".sigil-exec-*")
	if err != nil {
		return fmt.Errorf("copy to %s: %w", filepath.Dir(dst), err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return nil
}
