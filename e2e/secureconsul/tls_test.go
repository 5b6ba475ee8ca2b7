package secureconsul

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
)

// pki is a throwaway CA with a certificate for the agent and one for a
// client, as PEM files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, pub, signer any) (*x509.Certificate, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, der
	}
	marshal := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}

	caKey := key()
	ca, caDER := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "movieapp test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, nil, &caKey.PublicKey, caKey)
	serverKey, clientKey := key(), key()
	_, serverDER := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "server.dc1.consul"}, DNSNames: []string{"server.dc1.consul", "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca, &serverKey.PublicKey, caKey)
	_, clientDER := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "metadata"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &clientKey.PublicKey, caKey)
	return pki{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", serverDER),
		serverKey:  write("server-key.pem", "EC PRIVATE KEY", marshal(serverKey)),
		clientCert: write("client.pem", "CERTIFICATE", clientDER),
		clientKey:  write("client-key.pem", "EC PRIVATE KEY", marshal(clientKey)),
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestTLSToConsul runs a service against an agent whose HTTPS port demands
// a client certificate, configured only through the standard CONSUL_*
// variables; without the certificate, or without the CA, it fails.
func TestTLSToConsul(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	agent := devconsul.New(t,
		"-hcl=ports { https = "+strconv.Itoa(port)+" }",
		`-hcl=tls {
  defaults { ca_file = "`+p.ca+`" cert_file = "`+p.serverCert+`" key_file = "`+p.serverKey+`" }
  https { verify_incoming = true }
}`)
	httpsAddr := "127.0.0.1:" + strconv.Itoa(port)
	plain, err := agent.Client("") // the agent's plain HTTP port, to look
	if err != nil {
		t.Fatal(err)
	}
	passing := func() int {
		entries, _, err := plain.Health().Service("metadata", "", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	certs := []string{consul.HTTPCAFile + "=" + p.ca, consul.HTTPClientCert + "=" + p.clientCert, consul.HTTPClientKey + "=" + p.clientKey}

	for _, tt := range []struct {
		name, addr string
		env        []string
	}{
		{"https:// address", "https://" + httpsAddr, env(certs...)},
		{"CONSUL_HTTP_SSL", httpsAddr, env(append(certs, consul.HTTPSSLEnvName+"=true")...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			proc, err := cluster.Start(ctx, binDir, "metadata", tt.addr, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "registered over TLS", func() bool { return passing() == 1 })
			if code, err := proc.Stop(); err != nil || code != 0 {
				t.Errorf("exit code %d, %v; want 0:\n%s", code, err, proc.Logs())
			}
			waitFor(t, 10*time.Second, "deregistered over TLS", func() bool { return passing() == 0 })
		})
	}

	for _, tt := range []struct {
		name, want string
		env        []string
	}{
		// With TLS 1.3 the agent refuses a missing client certificate
		// after the client's side of the handshake: the client sees a
		// reset or a broken pipe, not always a message to check.
		{"without a client certificate", "", env(consul.HTTPCAFile + "=" + p.ca)},
		{"without the CA", "certificate signed by unknown authority",
			env(consul.HTTPClientCert+"="+p.clientCert, consul.HTTPClientKey+"="+p.clientKey)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runToExit(t, "metadata", "https://"+httpsAddr, tt.env, "-start-timeout", "2s")
			t.Logf("exit %d: %s", code, lastLine(stderr))
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit code %d, want non-zero with %q in:\n%s", code, tt.want, stderr)
			}
			if n := passing(); n != 0 {
				t.Errorf("%d metadata instances registered, want none", n)
			}
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
