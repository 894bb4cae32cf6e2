package test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestDist runs the release script (make dist) into a temporary folder with
// a throw-away code-signing certificate, then checks what an operator
// checks: every artifact is there, the host's binaries report the version,
// SHA256SUMS matches, and osslsigncode accepts the signed .exe files only
// against the right CA and rejects unsigned or altered ones.
func TestDist(t *testing.T) {
	// Not parallel: the cross builds would starve the timing-free but
	// CPU-hungry tests that run beside it (the soak, the rolling restarts).
	oss := requireTool(t, "osslsigncode", "osslsigncode")
	requireTool(t, "openssl", "openssl")
	dir := t.TempDir()
	ca, cert, key := makeCodeSigningCert(t, filepath.Join(dir, "pki"))
	otherCA, _, _ := makeCodeSigningCert(t, filepath.Join(dir, "other"))

	const version = "v0.0.0-e2etest"
	out := filepath.Join(dir, "dist")
	start := time.Now()
	// CI builds the host's platform and Windows (what signing needs); the
	// other two cost minutes of cold-cache compiling and add nothing the
	// script does differently. FERRY_DIST_FULL=1 builds all four.
	platforms := []string{"linux_amd64", "windows_amd64"}
	if os.Getenv("FERRY_DIST_FULL") == "1" {
		platforms = []string{"linux_amd64", "linux_arm64", "windows_amd64", "darwin_arm64"}
	}
	cmd := exec.Command("scripts/dist.sh", out)
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "VERSION="+version, "SIGN_CERT="+cert, "SIGN_KEY="+key, "SIGN_TIMESTAMP_URL=", "SIGN_PASS_FILE=",
		"PLATFORMS="+strings.ReplaceAll(strings.Join(platforms, " "), "_", "/"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/dist.sh: %v\n%s", err, b)
	} else {
		t.Logf("dist built and signed in %s:\n%s", time.Since(start).Round(time.Millisecond), b)
	}

	var want []string
	for _, p := range platforms {
		for _, prog := range []string{"ferry-agent", "ferry-gateway"} {
			name := prog + "_" + version + "_" + p
			if strings.HasPrefix(p, "windows") {
				name += ".exe"
			}
			want = append(want, name)
		}
	}
	sort.Strings(want)
	for _, name := range want {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("missing artifact %s: %v", name, err)
		}
	}

	// The host's binaries run and report the version.
	host := runtime.GOOS + "_" + runtime.GOARCH
	for _, prog := range []string{"ferry-agent", "ferry-gateway"} {
		bin := filepath.Join(out, prog+"_"+version+"_"+host)
		if _, err := os.Stat(bin); err != nil {
			t.Logf("no %s build for this host; not run", host)
			break
		}
		b, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.HasPrefix(string(b), prog+" "+version+" ") {
			t.Errorf("%s version = %q, %v; want it to start with %q", filepath.Base(bin), b, err, prog+" "+version)
		}
	}

	// SHA256SUMS lists every artifact once, with the right digest, in the
	// format `sha256sum -c` reads.
	f, err := os.Open(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var listed []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q: want \"<hex>  <name>\"", sc.Text())
		}
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("SHA256SUMS names %s: %v", name, err)
		}
		if d := sha256.Sum256(b); hex.EncodeToString(d[:]) != sum {
			t.Errorf("SHA256SUMS: wrong digest for %s", name)
		}
		listed = append(listed, name)
	}
	sort.Strings(listed)
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Errorf("SHA256SUMS lists %q, want %q", listed, want)
	}
	if sha, err := exec.LookPath("sha256sum"); err == nil {
		c := exec.Command(sha, "-c", "--strict", "SHA256SUMS")
		c.Dir = out
		if b, err := c.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, b)
		}
	}

	// Signatures: trusted with the right CA only; a signature removed or a
	// byte changed after signing fails.
	verify := func(exe, caFile string) (bool, string) {
		b, err := exec.Command(oss, "verify", "-CAfile", caFile, "-in", exe).CombinedOutput()
		return err == nil, string(b)
	}
	for _, name := range want {
		if !strings.HasSuffix(name, ".exe") {
			continue
		}
		exe := filepath.Join(out, name)
		if ok, b := verify(exe, ca); !ok {
			t.Errorf("osslsigncode verify %s with the signing CA failed:\n%s", name, b)
		}
		if ok, _ := verify(exe, otherCA); ok {
			t.Errorf("osslsigncode verify %s passed with an unrelated CA", name)
		}
		unsigned := filepath.Join(dir, "unsigned-"+name)
		if b, err := exec.Command(oss, "remove-signature", "-in", exe, "-out", unsigned).CombinedOutput(); err != nil {
			t.Fatalf("osslsigncode remove-signature: %v\n%s", err, b)
		}
		if ok, _ := verify(unsigned, ca); ok {
			t.Errorf("osslsigncode verify passed on %s without its signature", name)
		}
		altered := filepath.Join(dir, "altered-"+name)
		b, _ := os.ReadFile(exe)
		b[len(b)/3] ^= 0xff // inside the code, covered by the signed digest
		os.WriteFile(altered, b, 0o644)
		if ok, _ := verify(altered, ca); ok {
			t.Errorf("osslsigncode verify passed on %s with a byte changed", name)
		}
	}
}

// TestDistRefusesHalfACertificate: a PEM certificate without its key is a
// clear error before anything is built.
func TestDistRefusesHalfACertificate(t *testing.T) {
	t.Parallel()
	cert := filepath.Join(t.TempDir(), "cert.pem")
	os.WriteFile(cert, []byte("not used"), 0o600)
	cmd := exec.Command("scripts/dist.sh", t.TempDir())
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "VERSION=v0", "SIGN_CERT="+cert, "SIGN_KEY=")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "dist: SIGN_") || strings.Contains(string(b), "signed") {
		t.Errorf("dist with SIGN_CERT and no SIGN_KEY: %v\n%s", err, b)
	}
}

// makeCodeSigningCert makes a throw-away CA and a code-signing certificate
// issued by it (valid for a day) in dir. It returns the CA file, the
// certificate chain file (leaf, then CA) and the leaf's key.
func makeCodeSigningCert(t *testing.T, dir string) (caFile, chainFile, keyFile string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	os.WriteFile(p("leaf.ext"), []byte("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"), 0o600)
	for _, args := range [][]string{
		{"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "1",
			"-subj", "/CN=Ferry throw-away test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"},
		{"req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("sign.key"), "-out", p("sign.csr"), "-subj", "/CN=Ferry throw-away code signing"},
		{"x509", "-req", "-in", p("sign.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "1",
			"-extfile", p("leaf.ext"), "-out", p("sign.pem")},
	} {
		if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	leaf, _ := os.ReadFile(p("sign.pem"))
	caPEM, _ := os.ReadFile(p("ca.pem"))
	if err := os.WriteFile(p("chain.pem"), append(leaf, caPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p("ca.pem"), p("chain.pem"), p("sign.key")
}
