"""Proxies and certificates: HTTP_PROXY / NO_PROXY, the `proxy` setting, and a certificate
authority of one's own (ca_bundle, SSL_CERT_FILE), each against a real proxy or HTTPS server
started in the test."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from chatcli.base.errors import EXIT_CONFIG, EXIT_NETWORK
from tests.support.proxy import Proxy
from tests.support.server import ChatServer

NO_RETRIES = {"CHATCLI_MAX_RETRIES": "0"}
# Whatever the machine running the tests has set, these runs decide for themselves.
# (Both spellings: where both are set, the lower-case one wins, and an empty one removes the other.)
def proxy_env(*, http: str = "", no: str = "") -> dict[str, str]:
    values = {"HTTP_PROXY": http, "HTTPS_PROXY": "", "ALL_PROXY": "", "NO_PROXY": no}
    return {**values, **{name.lower(): value for name, value in values.items()}}


NO_PROXY_AT_ALL = proxy_env()


def write_config(text: str) -> Path:
    path = Path.home() / "config" / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def proxy():
    with Proxy() as running:
        yield running


def test_http_proxy_in_the_environment_carries_the_request(srv, proxy, run_chatcli):
    result = run_chatcli("hello", env=proxy_env(http=proxy.url))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello\n"  # streamed back through the proxy
    # No model is configured, so chatcli asks the server for its models first: that goes through the proxy too.
    assert proxy.seen == [f"GET {srv.base_url}/models", f"POST {srv.base_url}/chat/completions"]
    assert len(srv.chat_requests) == 1


def test_no_proxy_sends_around_the_proxy(srv, proxy, run_chatcli):
    result = run_chatcli("hello", env=proxy_env(http=proxy.url, no="127.0.0.1"))

    assert result.returncode == 0, result.stderr
    assert proxy.seen == []
    assert len(srv.chat_requests) == 1


def test_the_proxy_setting_of_a_profile_carries_its_requests_only(srv, proxy, run_chatcli):
    write_config(f'[profiles.office]\nproxy = "{proxy.url}"\n')

    direct = run_chatcli("direct", env=NO_PROXY_AT_ALL)
    proxied = run_chatcli("-p", "office", "proxied", env=NO_PROXY_AT_ALL)
    listed = run_chatcli("models", "-p", "office", env=NO_PROXY_AT_ALL)

    assert (direct.returncode, proxied.returncode, listed.returncode) == (0, 0, 0), proxied.stderr
    assert proxied.stdout == "echo: proxied\n"
    assert proxy.seen == [f"GET {srv.base_url}/models", f"POST {srv.base_url}/chat/completions", f"GET {srv.base_url}/models"]
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["direct", "proxied"]


def test_no_proxy_passes_by_the_proxy_setting_too(srv, proxy, run_chatcli):
    write_config(f'proxy = "{proxy.url}"\n')

    result = run_chatcli("hello", env=proxy_env(no="127.0.0.1"))

    assert result.returncode == 0, result.stderr
    assert proxy.seen == []


def test_config_show_hides_a_proxy_password(run_chatcli):
    write_config('proxy = "http://me:hunter2-secret@proxy.example.com:3128"\n')

    result = run_chatcli("config", "show")

    assert 'proxy = "http://me:***@proxy.example.com:3128"' in result.stdout
    assert "hunter2-secret" not in result.stdout


def test_a_proxy_that_is_not_there_is_one_sentence(srv, run_chatcli):
    with Proxy() as gone:
        url = gone.url
    write_config(f'proxy = "{url}"\n')

    result = run_chatcli("hello", env={**NO_PROXY_AT_ALL, **NO_RETRIES})

    assert result.returncode == EXIT_NETWORK
    assert result.stderr == f"chatcli: Could not connect to {srv.base_url} through the proxy {url}; check proxy in your config.\n"
    assert srv.chat_requests == []


def test_a_proxy_password_is_not_shown(srv, run_chatcli):
    with Proxy() as gone:
        url = gone.url.replace("http://", "http://me:hunter2-secret@")
    write_config(f'proxy = "{url}"\n')

    result = run_chatcli("hello", env={**NO_PROXY_AT_ALL, **NO_RETRIES})

    assert result.returncode == EXIT_NETWORK
    assert "hunter2-secret" not in result.stderr and "me:***@" in result.stderr


# --------------------------------------------------------------------------- #
# HTTPS with a certificate authority of one's own
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def authority():
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(authority):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with ChatServer(tls=context) as server:
        yield server


@pytest.fixture
def ca_file(authority, tmp_path: Path) -> Path:
    path = tmp_path / "company-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return path


def test_a_certificate_from_an_unknown_authority_is_one_sentence(tls_server, run_chatcli):
    result = run_chatcli("--base-url", tls_server.base_url, "hello", env=NO_RETRIES)

    assert result.returncode == EXIT_CONFIG
    assert result.stderr == (
        f"chatcli: The certificate of {tls_server.base_url} could not be verified; if your own authority "
        "signed it, set ca_bundle (or SSL_CERT_FILE) to its PEM file.\n"
    )


def test_ca_bundle_trusts_that_authority(tls_server, ca_file, run_chatcli):
    write_config(f'[profiles.corp]\nbase_url = "{tls_server.base_url}"\nca_bundle = "{ca_file}"\n')

    result = run_chatcli("-p", "corp", "hello", env=NO_RETRIES)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello\n"
    assert tls_server.chat_requests[-1].body["messages"][-1]["content"] == "hello"


def test_ssl_cert_file_trusts_that_authority(tls_server, ca_file, run_chatcli):
    result = run_chatcli("--base-url", tls_server.base_url, "hello", env={**NO_RETRIES, "SSL_CERT_FILE": str(ca_file)})

    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello\n"


def test_https_proxy_tunnels_to_an_https_server(tls_server, ca_file, proxy, run_chatcli):
    env = {**proxy_env(), "HTTPS_PROXY": proxy.url, "https_proxy": proxy.url, "SSL_CERT_FILE": str(ca_file)}

    result = run_chatcli("--base-url", tls_server.base_url, "through the tunnel", env={**env, **NO_RETRIES})

    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: through the tunnel\n"
    host = tls_server.base_url.split("//")[1].split("/")[0]
    assert proxy.seen == [f"CONNECT {host}"]  # the proxy saw where, not what: TLS ran end to end


@pytest.mark.parametrize("what", ["text", "directory", "/dev/zero"])
def test_a_ca_bundle_that_is_not_certificates_is_refused_before_sending(tls_server, tmp_path, run_chatcli, what):
    junk = tmp_path / "junk.pem"
    if what == "text":
        junk.write_text("not a certificate\n")
    elif what == "directory":
        junk.mkdir()
    else:
        junk = Path(what)  # read forever, if it were read
    write_config(f'ca_bundle = "{junk}"\n')
    before = len(tls_server.chat_requests)

    result = run_chatcli("--base-url", tls_server.base_url, "hello")

    assert result.returncode == EXIT_CONFIG
    assert result.stderr == f"chatcli: The CA bundle {junk} could not be loaded; set ca_bundle to a PEM file of certificates.\n"
    assert len(tls_server.chat_requests) == before  # refused before anything was sent
