package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The test binary doubles as sigil-exec when asked, so exec and exit statuses are tested on a
// real process (tests/integration/sigil-exec.int-spec.ts does the same with the release build).
func TestMain(m *testing.M) {
	if os.Getenv("SIGIL_EXEC_TEST_AS_MAIN") == "1" {
		os.Unsetenv("SIGIL_EXEC_TEST_AS_MAIN")
		main()
		return
	}
	os.Exit(m.Run())
}

func TestParseEnv(t *testing.T) {
	got, err := parseEnv([]byte("A=1\x00MULTI=line one\nline two\x00EQ=a=b==c\x00EMPTY=\x00_x9=y\x00"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "MULTI=line one\nline two", "EQ=a=b==c", "EMPTY=", "_x9=y"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, err := parseEnv(nil); err != nil || len(got) != 0 {
		t.Fatalf("an empty file is no entries, got %q, %v", got, err)
	}
}

func TestParseEnvRefusesBadEntriesWithoutQuotingThem(t *testing.T) {
	for _, data := range []string{"A=1\x00no-equals-canary", "9KEY=canary", "=canary", "BAD-KEY=canary", "K\nEY=canary", "KÉY=canary"} {
		_, err := parseEnv([]byte(data))
		if err == nil {
			t.Errorf("%q: accepted", data)
			continue
		}
		if strings.Contains(err.Error(), "canary") || strings.Contains(err.Error(), "KEY") {
			t.Errorf("%q: the error quotes the entry: %v", data, err)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	environ := []string{"PATH=/bin", "SIGIL_EXEC_ENV_FILE=/x", "HOME=/root", "DUP=first", "DUP=second"}
	got := mergeEnv(environ, []string{"HOME=/sigil", "NEW=1", "NEW=2"})
	want := []string{"PATH=/bin", "HOME=/sigil", "DUP=second", "NEW=2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCopyExecutable(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "sigil-exec")
	for range 2 { // a restarted init container copies over its earlier copy
		if err := copyExecutable(src, dst); err != nil {
			t.Fatal(err)
		}
	}
	info, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o555 {
		t.Fatalf("mode %v, want 0555", info.Mode().Perm())
	}
	if b, _ := os.ReadFile(dst); string(b) != "binary" {
		t.Fatalf("content %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

// asMain runs this test binary as sigil-exec with args and the env file holding data.
func asMain(t *testing.T, data string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte(data), 0o400); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = []string{"SIGIL_EXEC_TEST_AS_MAIN=1", "SIGIL_EXEC_ENV_FILE=" + file, "PATH=" + os.Getenv("PATH"), "KEEP=kept"}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

func TestExecsTheCommandWithTheMergedEnvironment(t *testing.T) {
	stdout, stderr, status := asMain(t, "SECRET=s3cr=t\nx\x00KEEP=replaced\x00", "sh", "-c", `printf '%s|%s|%s|%s' "$SECRET" "$KEEP" "${SIGIL_EXEC_ENV_FILE-unset}" "$1"`, "sh", "arg 1")
	if status != 0 || stderr != "" {
		t.Fatalf("status %d, stderr %q", status, stderr)
	}
	if want := "s3cr=t\nx|replaced|unset|arg 1"; stdout != want {
		t.Fatalf("stdout %q, want %q", stdout, want)
	}
}

func TestExitStatuses(t *testing.T) {
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "data")
	if err := os.WriteFile(notExecutable, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		data   string
		args   []string
		status int
	}{
		{"no command", "A=canary", nil, 1},
		{"bad entry", "A=1\x00canary", []string{"true"}, 1},
		{"not in PATH", "A=canary", []string{"sigil-no-such-command"}, 127},
		{"no such path", "A=canary", []string{filepath.Join(dir, "missing")}, 127},
		{"not executable", "A=canary", []string{notExecutable}, 126},
		{"a directory", "A=canary", []string{dir}, 126},
		{"the command's own status", "A=canary", []string{"sh", "-c", "exit 42"}, 42},
		{"--help", "A=canary", []string{"--help"}, 0},
	} {
		_, stderr, status := asMain(t, c.data, c.args...)
		if status != c.status {
			t.Errorf("%s: status %d, want %d (stderr %q)", c.name, status, c.status, stderr)
		}
		if c.status != 42 && c.status != 0 && !strings.HasPrefix(stderr, "sigil-exec: ") {
			t.Errorf("%s: stderr %q lacks the sigil-exec: prefix", c.name, stderr)
		}
		if strings.Contains(stderr, "canary") {
			t.Errorf("%s: stderr shows a value: %q", c.name, stderr)
		}
	}
}
