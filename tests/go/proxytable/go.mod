module pullgate.dev/tests/proxytable

go 1.27
