package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// FwdConfig is one half of a reference forwarder pair. The pair is
// client → TCP → [A] → TLS (or TCP) → [B] → TCP → sink: A accepts plain TCP
// and dials out with TLS (OutTLS); B accepts TLS (InTLS) and dials plain TCP.
// With neither set it is a plain TCP relay. Only the standard library is
// used, the way a Go programmer would write it: io.Copy each way (which
// splices TCP to TCP), CloseWrite at EOF.
type FwdConfig struct {
	Listen string // "127.0.0.1:0"
	To     string // where each accepted connection is relayed
	InTLS  bool   // accepted connections speak TLS (Cert, Key)
	OutTLS bool   // dial To with TLS, verifying against CA for "localhost"
	Cert   string
	Key    string
	CA     string
}

type closeWriter interface{ CloseWrite() error }

// RunForwarder listens and relays until ctx ends. It writes
// "forwarder listening addr=ADDR" to out once it listens.
func RunForwarder(ctx context.Context, cfg FwdConfig, out io.Writer) error {
	var srvTLS, cliTLS *tls.Config
	if cfg.InTLS {
		cert, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
		if err != nil {
			return err
		}
		srvTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.OutTLS {
		pemCA, err := os.ReadFile(cfg.CA)
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemCA) {
			return fmt.Errorf("no certificate in %s", cfg.CA)
		}
		cliTLS = &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "forwarder listening addr=%s\n", ln.Addr())
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	d := net.Dialer{Timeout: 10 * time.Second}
	for {
		in, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a net.Conn = in
			if srvTLS != nil {
				a = tls.Server(in, srvTLS)
			}
			b, err := d.DialContext(ctx, "tcp", cfg.To)
			if err != nil {
				in.Close()
				return
			}
			if cliTLS != nil {
				b = tls.Client(b, cliTLS)
			}
			relay(ctx, a, b)
		}()
	}
}

// relay copies both ways, passing each EOF on as a half-close, until both
// directions end; an error in either closes both.
func relay(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		dst.(closeWriter).CloseWrite()
	}
	wg.Add(2)
	go cp(b, a)
	cp(a, b)
	wg.Wait()
	a.Close()
	b.Close()
}

// WriteSelfSigned writes a fresh ECDSA P-256 certificate for "localhost"
// and 127.0.0.1 (as the gateway's self_signed mode makes) and its key.
func WriteSelfSigned(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "ferry-bench"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}
