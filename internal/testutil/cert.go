package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// WriteCert makes a self-signed certificate (its own CA) for the given DNS
// names and IP addresses, valid for a day, and writes cert.pem and key.pem
// into dir. Several gateway nodes can share it as [tls] cert_file/key_file
// and agents trust it as ca_file.
func WriteCert(dir string, hosts ...string) (certFile, keyFile string, err error) {
	return WriteCertUntil(dir, time.Now().Add(24*time.Hour), hosts...)
}

// WriteCertUntil is WriteCert for a certificate that expires at notAfter,
// which may be in the past. Its subject is CN=hosts[0].
func WriteCertUntil(dir string, notAfter time.Time, hosts ...string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		// Long before notAfter, so that an expired certificate is still a
		// valid one, and clear of any clock skew.
		NotBefore:             time.Now().Add(-30 * 24 * time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// ListenTLS listens on 127.0.0.1:0 with a fresh self-signed certificate for
// hosts that expires at notAfter (see WriteCertUntil), and returns the
// listener, closed at cleanup, and the certificate's file for clients to
// trust as their CA.
func ListenTLS(t testing.TB, notAfter time.Time, hosts ...string) (ln net.Listener, caFile string) {
	t.Helper()
	certFile, keyFile, err := WriteCertUntil(t.TempDir(), notAfter, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, certFile
}
