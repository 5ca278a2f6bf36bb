package main

// The kubelet's pull-secret reading and keyring matching, restated from
// kubernetes/kubernetes pkg/credentialprovider/config.go, keyring.go and
// secrets/secrets.go (v1.28 and master agree on all of it), so that the tables hold what
// Go answers for exactly that logic. Written for this repository; only the standard
// library is used.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
)

// dockerConfigJSON is config.go DockerConfigJSON.
type dockerConfigJSON struct {
	Auths       dockerConfig      `json:"auths"`
	HTTPHeaders map[string]string `json:"HttpHeaders,omitempty"`
}

// dockerConfig is config.go DockerConfig.
type dockerConfig map[string]dockerConfigEntry

// dockerConfigEntry is config.go DockerConfigEntry (without the provider field, which
// its UnmarshalJSON never sets).
type dockerConfigEntry struct {
	Username string
	Password string
	Email    string
}

// entryWithAuth is config.go dockerConfigEntryWithAuth.
type entryWithAuth struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Email    string `json:"email,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

// UnmarshalJSON is config.go DockerConfigEntry.UnmarshalJSON.
func (e *dockerConfigEntry) UnmarshalJSON(data []byte) error {
	var tmp entryWithAuth
	if err := json.Unmarshal(data, &tmp); err != nil {
		return err
	}
	e.Username, e.Password, e.Email = tmp.Username, tmp.Password, tmp.Email
	if len(tmp.Auth) == 0 {
		return nil
	}
	var err error
	e.Username, e.Password, err = decodeAuth(tmp.Auth)
	return err
}

// decodeAuth is config.go decodeDockerConfigFieldAuth.
func decodeAuth(field string) (string, string, error) {
	var decoded []byte
	var err error
	if strings.HasSuffix(strings.TrimSpace(field), "=") {
		decoded, err = base64.StdEncoding.DecodeString(field)
	} else {
		decoded, err = base64.RawStdEncoding.DecodeString(field)
	}
	if err != nil {
		return "", "", err
	}
	parts := strings.SplitN(string(decoded), ":", 2)
	if len(parts) != 2 {
		return "", "", fmt.Errorf("unable to parse auth field")
	}
	return parts[0], parts[1], nil
}

// decodeSecret is what secrets.go secretsToTrackedDockerConfigs unmarshals for one
// secret of each type.
func decodeSecret(data []byte, legacy bool) (dockerConfig, error) {
	if legacy {
		cfg := dockerConfig{}
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, err
		}
		return cfg, nil
	}
	cfg := dockerConfigJSON{}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, err
	}
	return cfg.Auths, nil
}

// normalizeKey is the key keyring.go BasicDockerKeyring.Add files an entry under.
func normalizeKey(loc string) (string, *url.URL, error) {
	value := loc
	if !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
		value = "https://" + value
	}
	parsed, err := url.Parse(value)
	if err != nil {
		return "", nil, err
	}
	effectivePath := parsed.Path
	if strings.HasPrefix(effectivePath, "/v2/") || strings.HasPrefix(effectivePath, "/v1/") {
		effectivePath = effectivePath[3:]
	}
	if len(effectivePath) > 0 && effectivePath != "/" {
		return parsed.Host + effectivePath, parsed, nil
	}
	return parsed.Host, parsed, nil
}

// parseSchemeless is keyring.go ParseSchemelessURL.
func parseSchemeless(s string) (*url.URL, error) {
	parsed, err := url.Parse("https://" + s)
	if err != nil {
		return nil, err
	}
	parsed.Scheme = ""
	return parsed, nil
}

// splitURL is keyring.go SplitURL.
func splitURL(u *url.URL) ([]string, string) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return strings.Split(host, "."), port
}

// urlsMatch is keyring.go URLsMatch.
func urlsMatch(glob, target *url.URL) bool {
	globParts, globPort := splitURL(glob)
	targetParts, targetPort := splitURL(target)
	if globPort != targetPort || len(globParts) != len(targetParts) {
		return false
	}
	if !strings.HasPrefix(target.Path, glob.Path) {
		return false
	}
	for k, part := range globParts {
		matched, err := filepath.Match(part, targetParts[k])
		if err != nil || !matched {
			return false
		}
	}
	return true
}

// urlsMatchStr is keyring.go URLsMatchStr, errors read as "no match" as Lookup and
// the credential-provider plugin's isImageAllowed read them.
func urlsMatchStr(glob, target string) bool {
	g, err := parseSchemeless(glob)
	if err != nil {
		return false
	}
	t, err := parseSchemeless(target)
	if err != nil {
		return false
	}
	return urlsMatch(g, t)
}

type cred struct{ user, pass string }

// keyring is keyring.go BasicDockerKeyring.
type keyring struct {
	index []string
	creds map[string][]cred
}

// add is BasicDockerKeyring.Add. Go ranges over the config map in random order; the
// keys are taken here in sorted order, the order pullgate chose, so that entries of one
// config that normalize to the same key have one answer.
func (k *keyring) add(cfg dockerConfig) {
	if k.creds == nil {
		k.creds = map[string][]cred{}
	}
	locs := make([]string, 0, len(cfg))
	for loc := range cfg {
		locs = append(locs, loc)
	}
	sort.Strings(locs)
	for _, loc := range locs {
		key, _, err := normalizeKey(loc)
		if err != nil {
			continue
		}
		e := cfg[loc]
		k.creds[key] = append(k.creds[key], cred{e.Username, e.Password})
		k.index = append(k.index, key)
	}
	seen := map[string]bool{}
	var unique []string
	for _, key := range k.index {
		if !seen[key] {
			seen[key] = true
			unique = append(unique, key)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(unique)))
	k.index = unique
}

// lookup is BasicDockerKeyring.Lookup.
func (k *keyring) lookup(image string) []cred {
	var ret []cred
	for _, key := range k.index {
		if urlsMatchStr(key, image) {
			ret = append(ret, k.creds[key]...)
		}
	}
	if len(ret) > 0 {
		return ret
	}
	if isDefaultRegistryMatch(image) {
		if auth, ok := k.creds["index.docker.io"]; ok {
			return auth
		}
	}
	return nil
}

// isDefaultRegistryMatch is keyring.go isDefaultRegistryMatch.
func isDefaultRegistryMatch(image string) bool {
	parts := strings.SplitN(image, "/", 2)
	if len(parts[0]) == 0 {
		return false
	}
	if len(parts) == 1 {
		return true
	}
	if parts[0] == "docker.io" || parts[0] == "index.docker.io" {
		return true
	}
	return !strings.ContainsAny(parts[0], ".:")
}
