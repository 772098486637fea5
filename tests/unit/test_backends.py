"""Backend field validation: the base URL's refusal of cloud metadata addresses in every spelling."""

from __future__ import annotations

import pytest

from gateway.backends import InvalidBackend, validate_base_url


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.169.254./",  # a trailing dot names the same host
        "http://0xa9fea9fe/",  # hexadecimal
        "http://2852039166/",  # one 32-bit number
        "http://0251.0376.0251.0376/",  # octal parts
        "http://169.254.43518/",  # a.b.c with a 16-bit last part
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
        "http://[fe80::1]/",  # any link-local address
        "http://100.100.100.200/",  # Alibaba Cloud
        "http://[fd00:ec2::254]/",  # AWS over IPv6
        "http://METADATA.GOOGLE.INTERNAL./computeMetadata/v1",
    ],
)
def test_cloud_metadata_addresses_are_refused_in_every_spelling(url: str) -> None:
    with pytest.raises(InvalidBackend, match="metadata"):
        validate_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8000/v1",
        "http://0x7f000001:8000/v1",  # loopback in hexadecimal: local model servers are allowed
        "http://[::1]:8000/v1",
        "http://10.0.0.7/v1",
        "http://localhost:11434/v1",
        "http://metadata-proxy.example.com/v1",
    ],
)
def test_ordinary_and_local_upstreams_are_accepted(url: str) -> None:
    assert validate_base_url(url + "/") == url
