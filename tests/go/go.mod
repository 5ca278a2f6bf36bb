// Go's own answers for pullgate's keyring tests (make go-tables). Standard library only.
// The go directive decides GODEBUG defaults (urlstrictcolons=1 from go 1.26).
module pullgate.dev/gotables

go 1.27
