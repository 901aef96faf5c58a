module sigil.dev/agent/exec-wrapper

go 1.24
