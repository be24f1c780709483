"""Sensors and serve over `rediss://` (TLS) with ACL users, as README says to run Redis when
sensors are on other machines: each user may do only its own part, passwords never show."""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.run import build, write_output
from lab.scenario import load_scenario
from tests.redis_server import RedisServer
from tests.streams import ROOT, Served, env, mip6mon, report, sensors_done

pytestmark = pytest.mark.redis

SENSOR_PASSWORD = "sensor-secret-1"
SERVE_PASSWORD = "serve-secret-2"


def _certificate(subject: str, key, issuer=None, issuer_key=None, ca: bool = False):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(path, cert=None, key=None) -> None:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tls_redis(tmp_path_factory):
    from tests.redis_server import REDIS_SERVER
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    directory = tmp_path_factory.mktemp("tls")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("mip6mon test CA", ca_key, ca=True)
    cert = _certificate("127.0.0.1", key, ca, ca_key)
    _pem(directory / "ca.pem", cert=ca)
    _pem(directory / "server.pem", cert=cert)
    _pem(directory / "server.key", key=key)
    port = _free_port()
    server = RedisServer(
        directory / "data",
        "--bind", "127.0.0.1", "--tls-port", str(port), "--tls-cert-file",
        str(directory / "server.pem"), "--tls-key-file", str(directory / "server.key"),
        "--tls-ca-cert-file", str(directory / "ca.pem"), "--tls-auth-clients", "no",
        # README's ACLs: no default user; a sensor appends, serve reads and acknowledges
        # (redis-server joins the words after an option up to the next --option)
        *f"--user default off --user sensor on >{SENSOR_PASSWORD} ~mip6mon:* -@all +ping "
         f"+xadd --user serve on >{SERVE_PASSWORD} ~mip6mon:* -@all +ping "
         "+xreadgroup +xack +xgroup|create +xgroup|destroy +xinfo|consumers "
         "--user admin on >admin-pw ~* +@all".split(), auth=("admin", "admin-pw"))
    server.start()
    yield server, port, directory / "ca.pem"
    server.stop()


def test_sensor_and_serve_over_tls_with_their_own_users(tls_redis, tmp_path):
    server, port, ca = tls_redis
    write_output(build(load_scenario("baseline")), tmp_path)
    capture = tmp_path / "capture.pcapng"
    base = f"127.0.0.1:{port}/?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    sensor_url = f"rediss://sensor:{SENSOR_PASSWORD}@{base}"
    # serve's password from the environment, not on its command line (ps shows those)
    os.environ["MIP6MON_REDIS_PASSWORD"] = SERVE_PASSWORD
    try:
        served = Served(f"rediss://serve@{base}", log=tmp_path / "serve.log")
    finally:
        del os.environ["MIP6MON_REDIS_PASSWORD"]
    try:
        run = subprocess.run(mip6mon("sensor", "-r", str(capture), "--vantage", "all",
                                     "--publish", sensor_url, "--name", "tls"),
                             cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert SENSOR_PASSWORD not in run.stderr and "***" in run.stderr
        whole = report(capture)
        status = served.wait(sensors_done(["tls"], whole["capture"]["mobility_packets"]),
                             what="the sensor's events over TLS")
        assert status["analysed"] + status["malformed"] == whole["capture"]["mobility_packets"]
        assert SERVE_PASSWORD not in (tmp_path / "serve.log").read_text()
    finally:
        served.stop()
    # a wrong password, TLS without the CA, and a user who may not read: one line each
    for url, expected in (
            (f"rediss://sensor:wrong@{base}", "refused the credentials"),
            (f"rediss://sensor:{SENSOR_PASSWORD}@127.0.0.1:{port}/?ssl_cert_reqs=required",
             "cannot reach Redis")):
        run = subprocess.run(mip6mon("sensor", "-r", str(capture), "--vantage", "all",
                                     "--publish", url), cwd=ROOT, env=env(),
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and expected in run.stderr, run.stderr
        assert "wrong" not in run.stderr and SENSOR_PASSWORD not in run.stderr
    run = subprocess.run(mip6mon("serve", "--subscribe", sensor_url), cwd=ROOT, env=env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no permissions" in run.stderr, run.stderr
    assert SENSOR_PASSWORD not in run.stderr
