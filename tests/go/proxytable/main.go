// proxytable prints what Go's net/http.ProxyFromEnvironment answers for a
// table of (environment, request URL) cases, one JSON object per line:
// {"env": [...], "url": "...", "answer": "DIRECT" | "proxy <url>" | "error: ..."}.
// Each case runs in a child process with ONLY the case's variables set,
// because ProxyFromEnvironment reads the environment once per process
// (sync.Once in envProxyFunc). containerd chooses its egress proxy this way;
// pullgate's tests replay the output (tests/data/go/proxy-from-environment.jsonl)
// against src/registry/proxy.rs. Regenerate with `make go-tables`.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
)

type tc struct {
	env []string // KEY=VALUE
	url string
}

var cases = []tc{
	// --- which variable, by scheme ---
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://reg.example.com/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "https://reg.example.com/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:3128"}, "http://reg.example.com/v2/"},
	{[]string{"ALL_PROXY=http://ap:3128"}, "https://reg.example.com/v2/"},
	// --- upper vs lower case ---
	{[]string{"HTTPS_PROXY=http://upper:1", "https_proxy=http://lower:1"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=", "https_proxy=http://lower:1"}, "https://reg.example.com/v2/"},
	{[]string{"https_proxy=http://lower:1"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=other.com", "no_proxy=reg.example.com"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "no_proxy=reg.example.com"}, "https://reg.example.com/v2/"},
	// --- CGI ---
	{[]string{"REQUEST_METHOD=GET", "HTTP_PROXY=http://hp:3128"}, "http://reg.example.com/v2/"},
	{[]string{"REQUEST_METHOD=GET", "HTTPS_PROXY=http://sp:3128"}, "https://reg.example.com/v2/"},
	// --- proxy URL forms ---
	{[]string{"HTTPS_PROXY=proxy.corp:3128"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=proxy.corp"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=localhost:3128"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=10.0.0.5:3128"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=https://proxy.corp:8443"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=socks5://proxy.corp:1080"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=socks5h://proxy.corp:1080"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://user:p%40ss@proxy.corp:3128"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://proxy.corp:3128/some/path"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://[::1"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=://nohost"}, "https://reg.example.com/v2/"},
	// --- localhost / loopback are never proxied ---
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://localhost:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "https://localhost/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://LOCALHOST:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://127.0.0.1:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://127.8.9.10:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://[::1]:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://localhost.localdomain:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://foo.localhost:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://[::ffff:127.0.0.1]:5000/v2/"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128"}, "http://0.0.0.0:5000/v2/"},
	// --- NO_PROXY grammar ---
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=*"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=foo.com,*"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=*.*"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com"}, "https://example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com"}, "https://badexample.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=.example.com"}, "https://example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=.example.com"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=*.example.com"}, "https://example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=*.example.com"}, "https://a.b.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=*example.com"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=reg.*.com"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=EXAMPLE.COM"}, "https://Reg.Example.Com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY= example.com , other.org "}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com;other.org"}, "https://reg.example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com "}, "https://example.com./v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=https://example.com"}, "https://example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com/v2"}, "https://example.com/v2/"},
	// ports
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com:5000"}, "https://example.com:5000/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com:5000"}, "https://example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=example.com:443"}, "https://example.com/v2/"},
	{[]string{"HTTP_PROXY=http://hp:1", "NO_PROXY=example.com:443"}, "http://example.com/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=.example.com:5000"}, "https://reg.example.com:5000/v2/"},
	// IPs and CIDRs
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.1.2.3"}, "https://10.1.2.3/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.1.2.3"}, "https://10.1.2.4/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.1.2.3:5000"}, "https://10.1.2.3:5000/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.1.2.3:5000"}, "https://10.1.2.3/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.0.0.0/8"}, "https://10.200.3.4:5000/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.0.0.0/8"}, "https://11.0.0.1/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.0.0.0/8"}, "https://reg.internal/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.0.0.0/8:5000"}, "https://10.200.3.4:5000/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=fd00::/8"}, "https://[fd12::1]:5000/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=[fd12::1]:5000"}, "https://[fd12::1]:5000/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=fd12::1"}, "https://[fd12::1]/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=0.1"}, "https://10.0.0.1/v2/"},
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=10.0.0.0/8"}, "https://[::ffff:10.0.0.1]/v2/"},
	// IDN
	{[]string{"HTTPS_PROXY=http://sp:1", "NO_PROXY=bücher.example"}, "https://xn--bcher-kva.example/v2/"},
	// containerd-shaped requests
	{[]string{"HTTPS_PROXY=http://sp:3128", "NO_PROXY=docker.io"}, "https://registry-1.docker.io/v2/library/nginx/manifests/latest"},
	{[]string{"HTTPS_PROXY=http://sp:3128", "NO_PROXY=.docker.io"}, "https://auth.docker.io/token?scope=repository%3Alibrary%2Fnginx%3Apull&service=registry.docker.io"},
	{[]string{"HTTPS_PROXY=http://sp:3128", "NO_PROXY=registry-1.docker.io"}, "https://auth.docker.io/token"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128", "NO_PROXY=.svc,.cluster.local"}, "http://mirror.kube-system.svc:5000/v2/library/nginx/manifests/latest?ns=docker.io"},
	{[]string{"HTTP_PROXY=http://hp:3128", "HTTPS_PROXY=http://sp:3128", "NO_PROXY=.svc,.cluster.local"}, "http://mirror.kube-system.svc.cluster.local:5000/v2/"},
}

func child(u string) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		fmt.Printf("bad url: %v", err)
		return
	}
	p, err := http.ProxyFromEnvironment(req)
	switch {
	case err != nil:
		fmt.Printf("error: %v", err)
	case p == nil:
		fmt.Print("DIRECT")
	default:
		fmt.Printf("proxy %s", p.String())
	}
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-child" {
		child(os.Args[2])
		return
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for _, c := range cases {
		out, err := runChild(self, c)
		if err != nil {
			out = "child failed: " + err.Error()
		}
		_ = enc.Encode(map[string]any{"env": c.env, "url": c.url, "answer": out, "go": runtime.Version()})
	}
}

func runChild(self string, c tc) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer r.Close()
	p, err := os.StartProcess(self, []string{self, "-child", c.url}, &os.ProcAttr{
		Env:   c.env, // nothing else: no inherited proxy variables
		Files: []*os.File{nil, w, os.Stderr},
	})
	w.Close()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, rerr := r.Read(buf)
		b.Write(buf[:n])
		if rerr != nil {
			break
		}
	}
	if _, err := p.Wait(); err != nil {
		return "", err
	}
	return b.String(), nil
}
