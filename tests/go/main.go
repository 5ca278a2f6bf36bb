// Command gotables prints Go's answers for pullgate's keyring tests into
// tests/data/go/*.jsonl (run by `make go-tables` from the repository root):
//
//	docker_config.jsonl  a pull secret's content → decoded entries (key, user, password)
//	auth.jsonl           an "auth" field → (username, password), or an error
//	keys.jsonl           a docker config key → url.Parse, the keyring key, its re-parse
//	match.jsonl          (docker config key, image name) → does Lookup find it
//	lookup.jsonl         several secrets and one image → the credentials, in order
//	patterns.jsonl       (matchImages pattern, image name) → URLsMatchStr
//	glob.jsonl           (pattern, name) → filepath.Match
//	fold.jsonl           the non-ASCII runes Go's JSON field matching folds to ASCII
//
// A Go string that is not valid UTF-8 is written as {"hex": "…"}. Cases are hand-picked edge
// cases plus pseudo-random ones from a fixed seed, so the output is the same each run.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

const seed = 20260611

// b is a Go string in a table: a JSON string when it is valid UTF-8, else {"hex": …}.
type b string

func (s b) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(s)) {
		return json.Marshal(string(s))
	}
	return json.Marshal(map[string]string{"hex": hex.EncodeToString([]byte(s))})
}

func h(s string) b { return b(s) }

type table struct {
	w *bufio.Writer
	f *os.File
	n int
}

func open(dir, name string) *table {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		panic(err)
	}
	return &table{w: bufio.NewWriter(f), f: f}
}

func (t *table) row(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	t.w.Write(b)
	t.w.WriteByte('\n')
	t.n++
}

func (t *table) close() {
	if err := t.w.Flush(); err != nil {
		panic(err)
	}
	t.f.Close()
}

func pick(r *rand.Rand, from []string) string { return from[r.Intn(len(from))] }

func main() {
	dir := "../data/go"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	r := rand.New(rand.NewSource(seed))
	keys := keyCases(r)
	counts := []string{
		fmt.Sprint("docker_config ", dockerConfigs(dir, r)),
		fmt.Sprint("auth ", auths(dir, r)),
		fmt.Sprint("keys ", keyTable(dir, keys)),
		fmt.Sprint("match ", matchTable(dir, r, keys)),
		fmt.Sprint("lookup ", lookupTable(dir, r)),
		fmt.Sprint("patterns ", patternTable(dir, r, keys)),
		fmt.Sprint("glob ", globTable(dir, r)),
		fmt.Sprint("fold ", foldTable(dir)),
	}
	fmt.Println(strings.Join(counts, ", "))
}

// --- docker configs -------------------------------------------------------------

var entryFields = []string{
	"username", "Username", "USERNAME", "u\u017fername", "password", "PassWord", "passwor\u0064",
	"auth", "AUTH", "Auth", "email", "EMAIL", "identitytoken", "registrytoken", "serveraddress",
	"user", "auth ", "", "\u212auth",
}

var topFields = []string{
	"auths", "Auths", "AUTHS", "auth\u017f", "AUTH\u017f", "auths ", "auth", "HttpHeaders",
	"httpheaders", "HTTPHEADERS", "credHelpers", "credsStore", "x", "",
}

var configKeys = []string{
	"r.io", "https://r.io", "http://r.io/", "https://r.io/v2/", "https://index.docker.io/v1/",
	"*.gcr.io", "r.io:5000", "u:p@r.io", "r.io/team", "R.io", "[a-c].io", "r io", "r.io/%zz",
	"", "\u00e9.io", "r.io?x", "r.io#y",
}

func randomText(r *rand.Rand) string {
	parts := []string{"a", "b", "\u00e9", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "\\ud800\\u0041",
		"\\udc00", "\\n", "\\\"", "\\\\", "\\/", "\xff", "\xe2\x82", "\xed\xa0\x80", ":", " ", "\\t"}
	var b strings.Builder
	for i := r.Intn(5); i > 0; i-- {
		b.WriteString(pick(r, parts))
	}
	return b.String()
}

func randomAuth(r *rand.Rand) string {
	user := pick(r, []string{"user", "", "u\u00e9", "a:b", "robot$x"})
	pass := pick(r, []string{"pass", "", "p:w", "\xff\xfe", "s3cr3t=="})
	var s string
	switch r.Intn(6) {
	case 0:
		s = base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	case 1:
		s = base64.RawStdEncoding.EncodeToString([]byte(user + ":" + pass))
	case 2:
		s = base64.StdEncoding.EncodeToString([]byte(user + pass))
	case 3:
		return randomBase64ish(r, 12)
	default:
		s = base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		s = mutateAuth(r, s)
	}
	return s
}

func mutateAuth(r *rand.Rand, s string) string {
	switch r.Intn(7) {
	case 0: // newlines inside
		i := r.Intn(len(s) + 1)
		return s[:i] + pick(r, []string{"\r\n", "\n", "\r"}) + s[i:]
	case 1: // strip padding
		return strings.TrimRight(s, "=")
	case 2: // surrounding space
		return pick(r, []string{" ", "\t", "\u00a0", "\u2028"}) + s + pick(r, []string{"", " ", "\n"})
	case 3: // a non-zero trailing bit
		if strings.HasSuffix(s, "=") {
			t := strings.TrimRight(s, "=")
			if len(t) > 0 {
				c := t[len(t)-1]
				if c != '/' && c != '9' && c != 'Z' && c != 'z' {
					t = t[:len(t)-1] + string(c+1)
				}
			}
			return t + s[len(t):]
		}
		return s
	case 4: // a character that is not base64
		i := r.Intn(len(s) + 1)
		return s[:i] + pick(r, []string{" ", "-", "_", "!", "\u00e9"}) + s[i:]
	case 5: // drop one character
		if len(s) > 0 {
			i := r.Intn(len(s))
			return s[:i] + s[i+1:]
		}
		return s
	default:
		return s + "="
	}
}

func randomBase64ish(r *rand.Rand, max int) string {
	alphabet := []string{"A", "Q", "g", "w", "8", "+", "/", "=", "\n", "\r", " ", "\t", "-"}
	var b strings.Builder
	for i := r.Intn(max + 1); i > 0; i-- {
		b.WriteString(pick(r, alphabet))
	}
	return b.String()
}

// jsonString quotes s for a JSON document: escapes what JSON requires, leaves any other
// byte (invalid UTF-8 included) raw, keeps backslash escapes written by hand.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func randomValue(r *rand.Rand, depth int) string {
	switch r.Intn(9) {
	case 0:
		return "null"
	case 1:
		return pick(r, []string{"0", "-1", "1.5e3", "true", "false"})
	case 2:
		if depth > 2 {
			return "[]"
		}
		return "[" + randomValue(r, depth+1) + "]"
	case 3:
		if depth > 2 {
			return "{}"
		}
		return `{"k":` + randomValue(r, depth+1) + "}"
	case 4, 5:
		return jsonString(randomAuth(r))
	default:
		return `"` + randomText(r) + `"`
	}
}

func randomEntry(r *rand.Rand) string {
	switch r.Intn(12) {
	case 0:
		return "null"
	case 1:
		return pick(r, []string{`"x"`, "1", "[]", "true", `[{"username":"u"}]`})
	}
	var fields []string
	for i := r.Intn(5); i > 0; i-- {
		name := pick(r, entryFields)
		var value string
		switch r.Intn(6) {
		case 0:
			value = randomValue(r, 0)
		case 1, 2:
			value = jsonString(randomAuth(r))
		default:
			value = `"` + randomText(r) + `"`
		}
		if strings.EqualFold(name, "auth") && r.Intn(2) == 0 {
			value = jsonString(randomAuth(r))
		}
		fields = append(fields, jsonString(name)+":"+value)
	}
	return "{" + strings.Join(fields, ",") + "}"
}

func randomEntries(r *rand.Rand) string {
	var members []string
	for i := r.Intn(4); i > 0; i-- {
		key := pick(r, configKeys)
		if r.Intn(5) == 0 {
			key = randomText(r)
		}
		members = append(members, jsonString(key)+":"+randomEntry(r))
	}
	return "{" + strings.Join(members, ",") + "}"
}

func randomDoc(r *rand.Rand, legacy bool) string {
	var doc string
	if legacy {
		switch r.Intn(10) {
		case 0:
			doc = pick(r, []string{"null", "[]", `"x"`, "1", "{}"})
		default:
			doc = randomEntries(r)
		}
	} else {
		var members []string
		for i := r.Intn(4); i > 0; i-- {
			name := pick(r, topFields)
			var value string
			switch r.Intn(8) {
			case 0:
				value = randomValue(r, 0)
			case 1:
				value = pick(r, []string{`{"X-A":"b"}`, `{"X-A":1}`, `{"X-A":null}`, `[]`, `"h"`})
			default:
				value = randomEntries(r)
			}
			members = append(members, jsonString(name)+":"+value)
		}
		switch r.Intn(12) {
		case 0:
			doc = pick(r, []string{"null", "[]", `"x"`, "1", "true"})
		default:
			doc = "{" + strings.Join(members, ",") + "}"
		}
	}
	return mutateDoc(r, doc)
}

func mutateDoc(r *rand.Rand, doc string) string {
	switch r.Intn(14) {
	case 0:
		return "\ufeff" + doc
	case 1:
		return doc + pick(r, []string{" x", "{}", ",", "\x00", " \n\t"})
	case 2:
		if len(doc) > 0 {
			return doc[:r.Intn(len(doc))]
		}
	case 3:
		if len(doc) > 0 {
			b := []byte(doc)
			b[r.Intn(len(b))] = pick(r, []string{"\x01", "{", "}", ",", ":", "\"", "\\", "\x7f", "\xff", " "})[0]
			return string(b)
		}
	case 4:
		return strings.ReplaceAll(doc, ",", " ,\n\t")
	case 5:
		return "\v" + doc
	}
	return doc
}

type configRow struct {
	Legacy bool `json:"legacy"`
	In     b    `json:"in"`
	// API: what the apiserver's ValidateSecret requires before storing a pull secret.
	API     bool   `json:"api"`
	OK      bool   `json:"ok"`
	Entries [][3]b `json:"entries,omitempty"`
}

func configCases(r *rand.Rand) (docs []configRow) {
	fixed := []string{
		``, ` `, `{}`, `null`, ` null `, `[]`, `"x"`, `1`, `true`, "\ufeff{}", `{}x`, `{} {}`, `{,}`,
		`{"auths":{}}`, `{"auths":null}`, `{"auths":[]}`, `{"auths":"x"}`, `{"auths":1}`,
		`{"auths":{"r.io":null}}`, `{"auths":{"r.io":{}}}`, `{"auths":{"r.io":"x"}}`,
		`{"auths":{"r.io":[]}}`, `{"auths":{"r.io":1}}`, `{"auths":{"r.io":true}}`,
		`{"auths":{"r.io":{"username":"u","password":"p"}}}`,
		`{"AUTHS":{"r.io":{"USERNAME":"u","PASSWORD":"p"}}}`,
		"{\"auth\u017f\":{\"r.io\":{\"u\u017fername\":\"u\",\"pa\u017f\u017fword\":\"p\"}}}",
		"{\"auths\":{\"r.io\":{\"username\":\"a\xffb\",\"password\":\"\xe2\x82\"}}}",
		`{"auths":{"r.io":{"username":"\ud800","password":"\ud83d\ude00\udc00"}}}`,
		`{"auths":{"r.io":{"username":1}}}`, `{"auths":{"r.io":{"username":null,"password":"p"}}}`,
		`{"auths":{"r.io":{"username":"a","username":null}}}`,
		`{"auths":{"r.io":{"username":"a","USERNAME":"b"}}}`,
		`{"auths":{"a.io":{}},"Auths":{"b.io":{}}}`, `{"auths":{"a.io":{}},"auths":null}`,
		`{"auths":null,"auths":{"b.io":{}}}`, `{"auths":{"a.io":{"username":"x"}},"auths":{"a.io":{}}}`,
		`{"auths":{"r.io":{"auth":"dXNlcjpwYXNz"}}}`, `{"auths":{"r.io":{"auth":"dXNlcjpwYXNz\r\n"}}}`,
		`{"auths":{"r.io":{"auth":"dXNlcjpwYQ=="}}}`, `{"auths":{"r.io":{"auth":"dXNlcjpwYQ"}}}`,
		`{"auths":{"r.io":{"auth":"dXNlcjpwYR=="}}}`, `{"auths":{"r.io":{"auth":"dXNlcjpwYR"}}}`,
		`{"auths":{"r.io":{"auth":"dXNlcg=="}}}`, `{"auths":{"r.io":{"auth":"!!"}}}`,
		`{"auths":{"r.io":{"auth":"","username":"u"}}}`, `{"auths":{"r.io":{"auth":null,"username":"u"}}}`,
		`{"auths":{"r.io":{"auth":"Og=="}}}`, `{"auths":{"r.io":{"auth":" dXNlcjpwYQ=="}}}`,
		`{"auths":{"r.io":{"auth":"dXNlcjpwYQ== "}}}`, `{"auths":{"r.io":{"auth":"dXNlcjpwYQ==\u00a0"}}}`,
		`{"auths":{"r.io":{"identitytoken":"t","registrytoken":"r"}}}`,
		`{"auths":{},"credHelpers":{"r.io":"x"},"credsStore":"y"}`,
		`{"auths":{},"HttpHeaders":{"a":"b"}}`, `{"auths":{},"HttpHeaders":{"a":1}}`,
		`{"auths":{},"HttpHeaders":{"a":null}}`, `{"auths":{},"HttpHeaders":[]}`,
		`{"auths":{},"HttpHeaders":null}`, `{"auths":{},"httpheaders":"x"}`,
		`{"HttpHeaders":1,"auths":{"r.io":{"auth":"!"}}}`,
		`{"auths":{"r.io":{"email":1}}}`, `{"auths":{"r.io":{"email":null}}}`,
		`{"auths":{"r.io":{"x":[1,{"y":null}]}}}`, `{"x":{"auths":1}}`,
		`{"auths":{"r.io":{}},}`, `{"auths":{"r.io":{}}`, `{'auths':{}}`, `{"auths":{"r.io":{"username":"\'"}}}`,
		`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":1E+2}`, `{"a":tru}`, `{"a":nul}`,
		"{\"a\":\"\x01\"}", "{\"a\":\"\x7f\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
		"\t{ \"auths\" : { } }\r\n", "\v{}", "{}\x00", "\x00{}",
	}
	deep := func(n int) string {
		return `{"x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `,"auths":{"r.io":{}}}`
	}
	for _, doc := range fixed {
		docs = append(docs, configRow{Legacy: false, In: b(doc)}, configRow{Legacy: true, In: b(doc)})
	}
	// The scanner's depth limit: the object plus 9999 arrays is 10000 levels, one more fails.
	docs = append(docs, configRow{In: b(deep(9999))}, configRow{In: b(deep(10000))})
	for _, doc := range []string{
		`{"r.io":{"username":"u"}}`, `{"r.io":null}`, `{"r.io":"x"}`, `{"auths":{"r.io":{}}}`,
		`{"R.IO":{"auth":"dXNlcjpwYXNz"},"r.io":{"AUTH":"dXNlcjpwYXNz"}}`,
	} {
		docs = append(docs, configRow{Legacy: true, In: b(doc)}, configRow{Legacy: false, In: b(doc)})
	}
	for i := 0; i < 3000; i++ {
		legacy := r.Intn(3) == 0
		docs = append(docs, configRow{Legacy: legacy, In: b(randomDoc(r, legacy))})
	}
	return docs
}

func dockerConfigs(dir string, r *rand.Rand) int {
	t := open(dir, "docker_config.jsonl")
	defer t.close()
	for _, row := range configCases(r) {
		cfg, err := decodeSecret([]byte(string(row.In)), row.Legacy)
		var anything map[string]any
		apiErr := json.Unmarshal([]byte(string(row.In)), &anything)
		out := configRow{Legacy: row.Legacy, In: row.In, API: apiErr == nil, OK: err == nil}
		if err == nil {
			keys := make([]string, 0, len(cfg))
			for k := range cfg {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				out.Entries = append(out.Entries, [3]b{h(k), h(cfg[k].Username), h(cfg[k].Password)})
			}
		}
		t.row(out)
	}
	return t.n
}

// --- auth fields ----------------------------------------------------------------

type authRow struct {
	In   b    `json:"in"`
	OK   bool `json:"ok"`
	User b    `json:"user,omitempty"`
	Pass b    `json:"pass,omitempty"`
}

func auths(dir string, r *rand.Rand) int {
	t := open(dir, "auth.jsonl")
	defer t.close()
	fixed := []string{
		"", "=", "==", "A", "AA", "AAA", "AAAA", "AA==", "AA=", "AAA=", "AA==\n", "AA=\n=", "AA\n==",
		"dXNlcjpwYXNz", "dXNlcjpwYXNz\r\n", "\r\ndXNlcjpwYXNz", "dXNl\ncjpw\rYXNz", "dXNlcjpwYQ==",
		"dXNlcjpwYQ", "dXNlcjpwYR==", "dXNlcjpwYR", "dXNlcjpwYf==", "dXNlcjpwYQ=", "dXNlcjpwYQ===",
		"dXNlcjpwYQ==dXNl", "dXNlcg==", "Og==", "Og", "OjoK", " dXNlcjpwYQ==", "dXNlcjpwYQ== ",
		"dXNlcjpwYQ==\t", "dXNlcjpwYQ==\u00a0", "dXNlcjpwYQ== \n", "dXNlcjpwYQ\u00a0",
		"dXNlcjpwYXNz=", "dXNlcjpwYXNz==", "dXNl cjpwYXNz", "dXNlcjpwYXNz\x00", "/+8=", "_-8=",
		"w7w6w7w=", "//79Ov/+", base64.StdEncoding.EncodeToString([]byte("\xff\xfe:\xfd")),
	}
	emit := func(s string) {
		user, pass, err := decodeAuth(s)
		row := authRow{In: h(s), OK: err == nil}
		if err == nil {
			row.User, row.Pass = h(user), h(pass)
		}
		t.row(row)
	}
	for _, s := range fixed {
		emit(s)
	}
	for i := 0; i < 2000; i++ {
		if i%2 == 0 {
			emit(randomAuth(r))
		} else {
			emit(randomBase64ish(r, 14))
		}
	}
	return t.n
}

// --- keys -------------------------------------------------------------------------

func keyCases(r *rand.Rand) []string {
	fixed := []string{
		"", "r.io", "https://r.io", "http://r.io", "HTTPS://r.io", "Https://r.io", "ftp://r.io",
		"//r.io", "///r.io", "https:///r.io", "https://", "http://", "r.io/", "r.io/v1/", "r.io/v2/",
		"r.io/v2", "r.io/v1/team", "r.io/v2/v2/x", "https://index.docker.io/v1/", "index.docker.io",
		"docker.io", "*.gcr.io", "*", "*.*", "**.io", "r*.io", "*-docker.pkg.dev", "[a-c].io",
		"r-[a].io", "r.io]", "]r.io", "r?.io", "r.io?x=1", "r.io/a?b", "r.io/a?", "r.io??", "r.io#x",
		"r.io/a#b", "r.io/a#%zz", "r.io/a#\x01", "r.io\x01", "r.io/\x7f", "r io", "r\tio", "r^io",
		"r\\io", "r|io", "r{io}", "r`io", "r<io>", "r\"io", "r!$&'()+,;=~_.io", "user@r.io",
		"user:pw@r.io", "a@b@r.io", "u%41@r.io", "u%zz@r.io", "\u00e9@r.io", "u p@r.io", "@r.io",
		"https://user@r.io/v2/", "r.io:5000", "r.io:", "r.io:0", "r.io:99999", "r.io:5a", "r.io::5",
		"a:b:5000", ":5000", "r.io:5000/team", "localhost:5000", "127.0.0.1:5000", "[::1]",
		"[::1]:5000", "[::1]:", "[::1]x", "[::1", "::1]", "[::1]:5000/x", "[127.0.0.1]",
		"[::ffff:127.0.0.1]:5000", "[fe80::1%25en0]:5000", "[fe80::1%25]", "[fe80::1%en0]",
		"[fe80::1%25%41]", "[fe80::1%25%C3%A9]", "[1:2:3:4:5:6:7:8]", "[1:2:3:4:5:6:7:8:9]",
		"[1::2::3]", "[12345::]", "[::]", "[:1]", "[1:]", "[::1.2.3.4]", "[::01.2.3.4]",
		"[1:2:3:4:5:6:1.2.3.4]", "[1:2:3:4:5:6:7:1.2.3.4]", "r%C3%A9.io", "r%41.io", "r%25.io",
		"r%7F.io", "r%80.io", "r%ff.io", "r%zz.io", "r%.io", "%", "r.io/%", "r.io/a%2Fb",
		"r.io/a%3Fb", "r.io/a%23b", "r.io/a%25b", "r.io/a%2525", "r.io/%7E", "r.io/a b",
		"r.io/\u00e9", "\u00e9.io", "R.IO", "Registry.Example.COM:5000/Team", "\u017f.io",
		"\u212a.io", "r.io\xff", "\xff", "r.io/\xff", "*", "r.io/v2/../x", "r.io/./x", "r.io//x",
		"*.example.com/team", "r.io:5000/v2/", "https://r.io:5000/v1/", "http://[::1]:5000",
	}
	alphabet := []string{"a", "b", "r", ".", ".", ":", "/", "/", "*", "?", "#", "[", "]", "%",
		"4", "1", "f", "@", "-", "_", "~", " ", "^", "\\", "\u00e9", "\xff", "\t", "5", "0",
		"https://", "v2/", "%2F", "%3F", "%25", ":5000", "io", "*."}
	var out []string
	out = append(out, fixed...)
	for i := 0; i < 2500; i++ {
		if i%3 == 0 {
			var b strings.Builder
			for j := r.Intn(9); j > 0; j-- {
				b.WriteString(pick(r, alphabet))
			}
			out = append(out, b.String())
			continue
		}
		out = append(out, structuredKey(r))
	}
	return out
}

func structuredKey(r *rand.Rand) string {
	schemes := []string{"", "", "", "https://", "http://", "HTTPS://", "//"}
	users := []string{"", "", "", "", "u@", "u:p@", "a@b@", "u%41@", "u%zz@", "\u00e9@"}
	labels := []string{"registry", "example", "com", "io", "gcr", "*", "*-x", "r*", "localhost",
		"127", "0", "1", "index", "docker", "Registry", "%C3%A9", "%41", "%25", "a_b", "a b", "a^b",
		"", "\u017f", "x"}
	ports := []string{"", "", "", ":5000", ":", ":0", ":99999", ":5a", "::5000"}
	paths := []string{"", "", "", "/", "/v1/", "/v2/", "/v2", "/v1/team", "/team", "/team/app",
		"/a%2Fb", "/a%3Fb", "/a%23b", "/a%25zz", "/%zz", "/a b", "/\u00e9", "/v2/v2/x", "/t\x01"}
	queries := []string{"", "", "", "", "?", "?x=1", "??"}
	frags := []string{"", "", "", "", "#", "#x", "#%zz", "#\x01"}
	var host []string
	for i := 1 + r.Intn(3); i > 0; i-- {
		host = append(host, pick(r, labels))
	}
	h := strings.Join(host, ".")
	if r.Intn(12) == 0 {
		h = pick(r, []string{"[::1]", "[fe80::1%25en0]", "[127.0.0.1]", "[::ffff:1.2.3.4]", "[a-c]"})
	}
	return pick(r, schemes) + pick(r, users) + h + pick(r, ports) + pick(r, paths) + pick(r, queries) + pick(r, frags)
}

type keyRow struct {
	In     b    `json:"in"`
	OK     bool `json:"ok"`
	Host   b    `json:"host,omitempty"`
	Path   b    `json:"path,omitempty"`
	Key    b    `json:"key,omitempty"`
	Again  bool `json:"again"`
	Labels []b  `json:"labels,omitempty"`
	Port   b    `json:"port,omitempty"`
	KPath  b    `json:"kpath,omitempty"`
}

func keyTable(dir string, keys []string) int {
	t := open(dir, "keys.jsonl")
	defer t.close()
	for _, k := range keys {
		row := keyRow{In: b(k)}
		key, parsed, err := normalizeKey(k)
		if err == nil {
			row.OK, row.Host, row.Path, row.Key = true, h(parsed.Host), h(parsed.Path), h(key)
			if again, err := parseSchemeless(key); err == nil {
				labels, port := splitURL(again)
				row.Again, row.Port, row.KPath = true, h(port), h(again.Path)
				for _, l := range labels {
					row.Labels = append(row.Labels, h(l))
				}
			}
		}
		t.row(row)
	}
	return t.n
}

// --- matching -------------------------------------------------------------------

var images = []string{
	"docker.io/library/nginx", "index.docker.io/library/nginx", "library/nginx", "nginx",
	"r.io/team/app", "r.io/app", "r.io:5000/team/app", "r.io:5000/x", "registry.example.com/team/app",
	"registry.example.com:5000/team/app", "us.gcr.io/p/a", "a.b.gcr.io/x", "gcr.io/x",
	"localhost:5000/x", "localhost/x", "[::1]:5000/x", "127.0.0.1:5000/x", "Registry.example.com/app",
	"x-docker.pkg.dev/p/r/i", "r.io/teamx/app", "r.io/a/b", "r.io/a?b", "r.io/\u00e9", "", "/x",
}

// imageFor makes an image name the key may match: its normalized form with globs filled.
func imageFor(r *rand.Rand, key string) string {
	norm, _, err := normalizeKey(key)
	if err != nil || !utf8.ValidString(norm) {
		return pick(r, images)
	}
	fill := pick(r, []string{"abc", "", "a.b", "x"})
	img := strings.ReplaceAll(norm, "*", fill)
	if !strings.Contains(img, "/") {
		img += "/x"
	} else if r.Intn(2) == 0 {
		img += pick(r, []string{"/x", "x", ""})
	}
	return img
}

type matchRow struct {
	Key   b    `json:"key"`
	Image b    `json:"image"`
	Match bool `json:"match"`
}

func matchTable(dir string, r *rand.Rand, keys []string) int {
	t := open(dir, "match.jsonl")
	defer t.close()
	for _, raw := range keys {
		// A config key comes out of JSON: always valid UTF-8.
		key := strings.ToValidUTF8(raw, "\ufffd")
		k := &keyring{}
		k.add(dockerConfig{key: {Username: "u", Password: "p"}})
		tried := map[string]bool{}
		for _, img := range []string{imageFor(r, key), imageFor(r, key), pick(r, images)} {
			if tried[img] {
				continue
			}
			tried[img] = true
			t.row(matchRow{Key: h(key), Image: h(img), Match: len(k.lookup(img)) > 0})
		}
	}
	return t.n
}

type lookupRow struct {
	Secrets []string            `json:"secrets"`
	Users   map[string][]string `json:"users"`
}

func lookupTable(dir string, r *rand.Rand) int {
	t := open(dir, "lookup.jsonl")
	defer t.close()
	pool := []string{"r.io", "https://r.io", "http://r.io/", "https://r.io/v2/", "r.io/team",
		"r.io/team/app", "*.io", "r.io:5000", "u@r.io", "R.io", "index.docker.io",
		"https://index.docker.io/v1/", "docker.io", "*.r.io", "r.io/te", "r.io/v1/team"}
	lookups := []string{"r.io/team/app", "r.io/app", "r.io:5000/x", "x.io/y", "docker.io/library/nginx", "a.r.io/b"}
	user := 0
	for i := 0; i < 600; i++ {
		var secrets []string
		k := &keyring{}
		for s := 1 + r.Intn(2); s > 0; s-- {
			cfg := dockerConfig{}
			var members []string
			for e := 1 + r.Intn(4); e > 0; e-- {
				key := pick(r, pool)
				if _, dup := cfg[key]; dup {
					continue
				}
				user++
				name := fmt.Sprintf("u%d", user)
				cfg[key] = dockerConfigEntry{Username: name, Password: "p"}
				members = append(members, jsonString(key)+`:{"username":"`+name+`","password":"p"}`)
			}
			secrets = append(secrets, "{\"auths\":{"+strings.Join(members, ",")+"}}")
			k.add(cfg)
		}
		users := map[string][]string{}
		for _, img := range lookups {
			users[img] = []string{}
			for _, c := range k.lookup(img) {
				users[img] = append(users[img], c.user)
			}
		}
		t.row(lookupRow{Secrets: secrets, Users: users})
	}
	return t.n
}

type patternRow struct {
	Pattern b    `json:"pattern"`
	OK      bool `json:"ok"`
	Image   b    `json:"image,omitempty"`
	Match   bool `json:"match"`
}

func patternTable(dir string, r *rand.Rand, keys []string) int {
	t := open(dir, "patterns.jsonl")
	defer t.close()
	patterns := []string{"*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn",
		"*.azurecr.io", "*.gcr.io", "gcr.io", "*.pkg.dev", "*-docker.pkg.dev", "public.ecr.aws",
		"r.io/team", "r.io:5000", "*", "*.*", "[a-c].io", "r?.io", "r.io/a%2Fb"}
	pimages := []string{"123.dkr.ecr.eu-west-1.amazonaws.com/app",
		"123.dkr.ecr.cn-north-1.amazonaws.com.cn/app", "x.azurecr.io/a", "us.gcr.io/p/a",
		"gcr.io/p/a", "europe-docker.pkg.dev/p/r/i", "public.ecr.aws/a/b", "r.io/team/x",
		"r.io:5000/x", "io/x", "a.b/x", "r.io/a/b"}
	for i, k := range keys {
		if i%2 == 1 {
			continue
		}
		patterns = append(patterns, strings.ToValidUTF8(k, "\ufffd"))
	}
	for _, p := range patterns {
		_, err := parseSchemeless(p)
		if err != nil {
			t.row(patternRow{Pattern: h(p)})
			continue
		}
		for _, img := range []string{pick(r, pimages), pick(r, images), imageFor(r, p)} {
			t.row(patternRow{Pattern: h(p), OK: true, Image: h(img), Match: urlsMatchStr(p, img)})
		}
	}
	return t.n
}

// --- globs and folds --------------------------------------------------------------

type globRow struct {
	Pattern b    `json:"pattern"`
	Name    b    `json:"name"`
	Match   bool `json:"match"`
}

func globTable(dir string, r *rand.Rand) int {
	t := open(dir, "glob.jsonl")
	defer t.close()
	fixed := [][2]string{{"*", ""}, {"*", "a/b"}, {"a*", "a/"}, {"[", "a"}, {"[]a]", "]"},
		{"[^a]", "b"}, {"[!a]", "!"}, {"[a-", "a"}, {"[a-c]", "b"}, {"\\", "\\"}, {"\\*", "*"},
		{"?", "\u00e9"}, {"?", "\xff"}, {"[\xff]", "\xff"}, {"[a-\xff]", "b"}, {"a\xff", "a\xff"},
		{"*x", "a/x"}, {"a*b*c", "axbyc"}, {"[\\]]", "]"}, {"[\\", "a"}, {"*[", "a"}, {"a*[", "b"}}
	for _, c := range fixed {
		ok, err := filepath.Match(c[0], c[1])
		t.row(globRow{Pattern: h(c[0]), Name: h(c[1]), Match: ok && err == nil})
	}
	alphabet := []string{"a", "b", "*", "?", "[", "]", "^", "-", "\\", "/", "\u00e9", "\xff", "c"}
	names := []string{"a", "b", "c", "/", "\u00e9", "\xff", "-", "]", "*"}
	for i := 0; i < 4000; i++ {
		var p, n strings.Builder
		for j := r.Intn(7); j > 0; j-- {
			p.WriteString(pick(r, alphabet))
		}
		for j := r.Intn(5); j > 0; j-- {
			n.WriteString(pick(r, names))
		}
		if i%3 == 0 {
			// A name the pattern may well match: its metacharacters filled in.
			n.Reset()
			fill := strings.NewReplacer("*", pick(r, []string{"", "ab", "/"}), "?", "a", "[", "", "]", "", "^", "", "\\", "")
			n.WriteString(fill.Replace(p.String()))
		}
		ok, err := filepath.Match(p.String(), n.String())
		t.row(globRow{Pattern: h(p.String()), Name: h(n.String()), Match: ok && err == nil})
	}
	return t.n
}

type foldRow struct {
	Rune  int    `json:"rune"`
	ASCII string `json:"ascii"`
}

func foldTable(dir string) int {
	t := open(dir, "fold.jsonl")
	defer t.close()
	for c := rune(0x80); c <= 0x10FFFF; c++ {
		if !utf8.ValidRune(c) {
			continue
		}
		for a := byte(0x21); a < 0x7f; a++ {
			if bytes.EqualFold([]byte(string(c)), []byte{a}) {
				t.row(foldRow{Rune: int(c), ASCII: string(a)})
			}
		}
	}
	return t.n
}

// url is used by kubelet.go; keep the import honest here too.
var _ = url.Parse
