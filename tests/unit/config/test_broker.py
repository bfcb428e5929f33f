"""The broker's address: the inventory's forms read into one URL and back."""

from __future__ import annotations

import pytest

from cmqueue.config.broker import BrokerAddress, check, parse, render, url_of
from cmqueue.core.errors import ConfigError, InsecureFileError
from cmqueue.core.redact import redact_url
from cmqueue.queue.broker import celery_settings


def test_a_group_url_names_its_sentinels_master_and_secrets_and_reads_back():
    address = BrokerAddress("sentinel", (("10.0.0.5", 26379), ("::1", 26380)), password="p@ss:w/rd",
                            master="cmq", sentinel_password="s3")
    url = render(address)
    assert url.startswith("sentinel://:p%40ss%3Aw%2Frd@10.0.0.5:26379,[::1]:26380/0?master=cmq")
    assert parse(url) == address
    assert "p%40ss" not in redact_url(url) and "s3" not in redact_url(url)


@pytest.mark.parametrize(("url", "message"), [
    ("http://h:1", "must be a redis://, rediss://, unix:// or sentinel:// URL"),
    ("sentinel://h:26379/0", r"needs \?master=NAME"),
    ("redis://a:1,b:2/0", "names one host"),
    ("redis://h:99999/0", "is not host:port"),
    ("redis://h:1/x", "the database must be a number"),
])
def test_a_url_that_is_not_a_broker_is_refused_saying_why(url, message):
    with pytest.raises(ConfigError, match=message):
        parse(url)


def test_celery_gets_the_sentinels_one_by_one_and_the_group_in_its_options():
    url = render(BrokerAddress("sentinel", (("a", 1), ("b", 2)), password="pw", master="cmq",
                               sentinel_password="sp"))
    conf = celery_settings(url, results=True)
    assert conf["broker_url"] == "sentinel://:pw@a:1/0;sentinel://:pw@b:2/0" == conf["result_backend"]
    assert conf["broker_transport_options"]["master_name"] == "cmq"
    assert conf["broker_transport_options"]["sentinel_kwargs"]["password"] == "sp"


def test_tls_files_travel_in_the_url_and_certificates_are_required(tmp_path):
    url = url_of(tmp_path / "cmq.yaml", {"url": "rediss://:pw@h:6380/0", "tls": {"ca": "ca.pem"}})
    address = parse(url)
    assert address.tls and address.tls_files == {"ssl_ca_certs": str(tmp_path / "ca.pem")}
    assert celery_settings(url)["broker_use_ssl"]["ssl_cert_reqs"].name == "CERT_REQUIRED"


def test_the_mapping_form_is_read_with_its_password_file(tmp_path):
    secret = tmp_path / "broker.password"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    value = check(tmp_path / "cmq.yaml", {"sentinels": ["127.0.0.1:26379", "127.0.0.1"], "master": "cmq",
                                          "password_file": str(secret)})
    address = parse(url_of(tmp_path / "cmq.yaml", value))
    assert address.hosts == (("127.0.0.1", 26379), ("127.0.0.1", 26379)) and address.password == "from-file"
    secret.chmod(0o644)
    with pytest.raises(InsecureFileError, match="broker.password_file: .* accessible by group/others"):
        url_of(tmp_path / "cmq.yaml", value)


@pytest.mark.parametrize(("value", "message"), [
    ({"sentinels": ["h:1"]}, "broker.master: is required"),
    ({"sentinels": [], "master": "m"}, "broker.sentinels: must be a list"),
    ({"sentinels": ["h:1"], "master": "m", "password": "x", "password_file": "f"}, "give password or password_file"),
    ({"sentinels": ["h:1"], "master": "m", "colour": 1}, "broker.colour: unknown field"),
    ({"url": "redis://h:1/0", "tls": {"ca": "x"}}, "tls: needs a rediss:// URL"),
    ({"url": "rediss://h:1/0", "tls": {"cert": "c"}}, "give cert and key together"),
    (42, "must be a redis:// URL or a mapping"),
])
def test_a_bad_mapping_names_the_field(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        check(tmp_path / "cmq.yaml", value)


def test_a_tbd_password_without_a_terminal_says_what_to_do(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    value = check(tmp_path / "cmq.yaml", {"sentinels": ["h:1"], "master": "m", "password": "TBD"})
    with pytest.raises(ConfigError, match="broker.password: is TBD.*password_file"):
        url_of(tmp_path / "cmq.yaml", value)
