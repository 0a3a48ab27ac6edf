"""url_context's URL policy: addresses that carry another address, and cloud host endpoints. Addresses are
judged by the policy functions alone: nothing here connects anywhere."""

from __future__ import annotations

import ipaddress
import re

import pytest

from openinteractions.tools.net import AddressPolicy, Refused, address_problem


@pytest.mark.parametrize(
    "address, problem",
    [
        # 6to4 (2002::/16): refused whatever it carries, and the reason names a carried address off limits
        ("2002:a9fe:a9fe::1", "6to4 address of 169.254.169.254, the cloud metadata service"),
        ("2002:0a00:0001::1", "6to4 address of 10.0.0.1, a private address"),
        ("2002:7f00:0001::1", "6to4 address of 127.0.0.1, a loopback address"),
        ("2002:0808:0808::1", "6to4 address (deprecated tunnel)"),
        # Teredo (2001::/32): the client's address is stored inverted
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo address of 10.0.0.1, a private address"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo address of 192.0.2.45, a documentation address"),
        # NAT64: judged by the IPv4 address it translates to
        ("64:ff9b::a00:1", "NAT64 address of 10.0.0.1, a private address"),
        ("64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254"),
        ("64:ff9b:1::7f00:1", "NAT64 address of 127.0.0.1, a loopback address"),
        ("::a9fe:a9fe", "IPv4-compatible address (deprecated) of 169.254.169.254"),
        ("::ffff:169.254.169.254", "cloud metadata service"),
        ("fec0::1", "site-local address"),
        ("168.63.129.16", "Azure's host endpoint"),
        ("100.100.100.200", "Alibaba Cloud's metadata service"),
        ("fd00:ec2::254", "AWS's IPv6 metadata service"),
        ("169.254.170.2", "link-local"),  # ECS task metadata
        ("100.64.0.1", "shared (CGNAT) address"),
        ("192.0.0.192", "IETF protocol assignment"),  # Oracle Cloud Classic's metadata
        ("198.18.0.1", "benchmarking"),
        ("3fff::1", "documentation"),
        ("255.255.255.255", "reserved"),
    ],
)
def test_addresses_that_reach_inside_are_refused(address: str, problem: str) -> None:
    found = address_problem(ipaddress.ip_address(address))
    assert found is not None and problem in found, found
    with pytest.raises(Refused, match=re.escape(problem)):
        AddressPolicy().check(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808", "1.1.1.1", "::", "::1"])
def test_public_addresses_pass_and_no_others(address: str) -> None:
    public = address not in ("::", "::1")
    assert (address_problem(ipaddress.ip_address(address)) is None) == public


@pytest.mark.parametrize("answer", ["fe80::1%eth0", "fe80::1%2", "not-an-address"])
def test_odd_resolver_answers_are_refused(answer: str) -> None:
    with pytest.raises(Refused):
        AddressPolicy(["fe80::/10"] if answer == "not-an-address" else None).check(answer)


def test_the_allow_list_covers_ipv4_mapped_addresses() -> None:
    AddressPolicy(["127.0.0.1/32"]).check("::ffff:127.0.0.1")
    with pytest.raises(Refused):
        AddressPolicy(["127.0.0.1/32"]).check("::ffff:127.0.0.2")
