"""An HTTPS proxy that lets TensorFlow's GCS client reach the test emulator (tests/gcs_emulator.py).

TensorFlow's ``tf.io.gfile`` (what etils.epath, TFDS, tf.data and TensorBoard's event writer use for
gs:// when TensorFlow is installed) sends every request to https://www.googleapis.com and has no
endpoint setting. It does honour libcurl's ``HTTPS_PROXY`` and ``CURL_CA_BUNDLE``: this proxy
accepts ``CONNECT www.googleapis.com:443``, terminates TLS with a certificate from a throwaway CA
made for the test (the bundle TensorFlow is told to trust), and forwards each request, unchanged, to
the emulator over plain HTTP on the loopback. Requests for credentials (the GCE metadata server)
get 404, so TensorFlow proceeds without a token, as the emulator expects. Nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import http.server
import os
import socketserver
import ssl
import tempfile
import threading
import urllib.parse

HOSTS = ("www.googleapis.com", "storage.googleapis.com")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


def _certificates(directory: str) -> tuple[str, str, str]:
  """(ca.pem, leaf.pem, leaf.key) in `directory`: a CA and a leaf for HOSTS it signed."""
  from cryptography import x509
  from cryptography.hazmat.primitives import hashes, serialization
  from cryptography.hazmat.primitives.asymmetric import ec
  from cryptography.x509.oid import NameOID

  now = datetime.datetime.now(datetime.timezone.utc)
  ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
      ec.SECP256R1()
  )
  ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtjax test CA")])
  ca = (
      x509.CertificateBuilder()
      .subject_name(ca_name)
      .issuer_name(ca_name)
      .public_key(ca_key.public_key())
      .serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(hours=1))
      .not_valid_after(now + datetime.timedelta(days=1))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(
          x509.KeyUsage(
              digital_signature=True,
              key_cert_sign=True,
              crl_sign=True,
              content_commitment=False,
              key_encipherment=False,
              data_encipherment=False,
              key_agreement=False,
              encipher_only=False,
              decipher_only=False,
          ),
          critical=True,
      )
      .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
      .sign(ca_key, hashes.SHA256())
  )
  leaf = (
      x509.CertificateBuilder()
      .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
      .issuer_name(ca_name)
      .public_key(leaf_key.public_key())
      .serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(hours=1))
      .not_valid_after(now + datetime.timedelta(days=1))
      .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
      .add_extension(
          x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
      )
      .sign(ca_key, hashes.SHA256())
  )
  paths = [os.path.join(directory, n) for n in ("ca.pem", "leaf.pem", "leaf.key")]
  pem = serialization.Encoding.PEM
  with open(paths[0], "wb") as f:
    f.write(ca.public_bytes(pem))
  with open(paths[1], "wb") as f:
    f.write(leaf.public_bytes(pem))
  with open(paths[2], "wb") as f:
    f.write(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
  return tuple(paths)


def _forwarding_handler(upstream: str):
  """A handler class relaying every request, as is, to http://`upstream` (host:port)."""

  class Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # Quiet unless asked.
      if os.environ.get("MTJAX_PROXY_DEBUG"):
        print("forward:", fmt % args, flush=True)

    def _body(self) -> bytes:
      if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
          size = int(self.rfile.readline().split(b";")[0].strip(), 16)
          if size == 0:
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
              pass
            return b"".join(chunks)
          chunks.append(self.rfile.read(size))
          self.rfile.readline()
      return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

    def _relay(self):
      body = self._body()
      headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
      headers["Content-Length"] = str(len(body))
      connection = http.client.HTTPConnection(upstream, timeout=60)
      try:
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        self.send_response(response.status, response.reason)
        for k, v in response.getheaders():
          if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
          self.wfile.write(payload)
      finally:
        connection.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _relay

  return Forward


def _proxy_handler(upstream: str, context: ssl.SSLContext):
  forward = _forwarding_handler(upstream)

  class Proxy(forward):  # Its _relay serves the plain-HTTP requests to HOSTS.

    def log_message(self, fmt, *args):
      if os.environ.get("MTJAX_PROXY_DEBUG"):
        print("proxy:", fmt % args, flush=True)

    def do_CONNECT(self):
      host = self.path.split(":")[0]
      if host not in HOSTS:
        self.send_error(403, f"the test proxy serves {HOSTS} only")
        return
      self.send_response(200, "Connection established")
      self.end_headers()
      self.close_connection = True
      try:
        tls = context.wrap_socket(self.connection, server_side=True)
      except (ssl.SSLError, OSError):
        return
      try:
        forward(tls, self.client_address, self.server)
      finally:
        with contextlib.suppress(OSError):
          tls.close()

    def do_GET(self):
      """Plain-HTTP requests: to HOSTS (the emulator's upload URLs say http://) forwarded, the
      GCE metadata server (credentials) and anything else 404."""
      url = urllib.parse.urlsplit(self.path)
      if url.hostname not in HOSTS:
        self.send_error(404, "no metadata server in the test")
        return
      self.path = url.path + (f"?{url.query}" if url.query else "")
      self._relay()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

  return Proxy


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
  daemon_threads = True


@contextlib.contextmanager
def running(emulator_url: str):
  """Starts the proxy in front of the emulator at `emulator_url`; yields the environment variables
  that route a process's TensorFlow GCS traffic through it; stops it."""
  upstream = emulator_url.split("://", 1)[1]
  with tempfile.TemporaryDirectory() as directory:
    ca, leaf, key = _certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf, key)
    server = _Server(("127.0.0.1", 0), _proxy_handler(upstream, context))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    try:
      yield {
          "HTTPS_PROXY": proxy,
          "https_proxy": proxy,
          "HTTP_PROXY": proxy,
          "http_proxy": proxy,
          "NO_PROXY": "127.0.0.1,localhost",
          "no_proxy": "127.0.0.1,localhost",
          "CURL_CA_BUNDLE": ca,
      }
    finally:
      server.shutdown()
      server.server_close()
