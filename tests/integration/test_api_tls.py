"""``kuailv serve`` over TLS when a certificate is configured (a self-signed one, made with openssl), and a
refusal to start with half a TLS configuration."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import wait_for
from tests.integration.processes import ROOT

pytestmark = pytest.mark.integration
PORT = 28011


def _self_signed(where: Path) -> tuple[Path, Path]:
    cert, key = where / "api.crt", where / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_the_api_serves_https_with_the_configured_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    env = {**os.environ, "KUAILV_PROFILE": "test", "KUAILV_API_TLS_CERT": str(cert), "KUAILV_API_TLS_KEY": str(key)}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(PORT)], cwd=ROOT, env=env,
                              stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    trusted = ssl.create_default_context(cafile=str(cert))

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{PORT}/healthz", timeout=2, context=trusted) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_for(up, 30, "kuailv serve over https", interval=0.3)
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain http on the TLS port: not served
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=3)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # nor to untrusting clients
            urllib.request.urlopen(f"https://127.0.0.1:{PORT}/healthz", timeout=3)
    finally:
        server.terminate()
        server.wait(15)
    assert "https://" in (tmp_path / "serve.log").read_text()


def test_half_a_tls_configuration_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "KUAILV_PROFILE": "test", "KUAILV_API_TLS_CERT": str(tmp_path / "api.crt")}
    env.pop("KUAILV_API_TLS_KEY", None)
    done = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--port", str(PORT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "KUAILV_API_TLS_KEY" in done.stderr
