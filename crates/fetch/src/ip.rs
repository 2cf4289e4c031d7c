//! Which addresses a fetch may never reach: everything that is not plain global unicast.
//!
//! A pure classifier, no I/O. It is written out range by range from the IANA special-purpose
//! registries rather than built on `IpAddr::is_global` (unstable) so that the list is visible,
//! tested, and does not change under us with a compiler upgrade. IPv6 forms that carry an IPv4
//! address (v4-mapped, NAT64, 6to4) are judged by the IPv4 address inside them, because that
//! is the host the packet ends up at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is in a range a fetch must not reach. Same as
/// `blocked_range(ip).is_some()`.
pub fn is_blocked(ip: IpAddr) -> bool {
    blocked_range(ip).is_some()
}

/// The name of the blocked range `ip` falls in, or `None` for an address a fetch may reach.
///
/// The names are a closed list, stable enough to log or show: `this_network`, `private`,
/// `cgnat`, `loopback`, `link_local`, `cloud_metadata`, `ietf_protocol`, `documentation`,
/// `benchmarking`, `multicast`, `reserved`, `broadcast`, `unspecified`, `unique_local`,
/// `site_local`, `discard`, `nat64_local`, `srv6`. An IPv6 address that embeds an IPv4 one
/// gets the IPv4 address's name.
pub fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    let name = match (a, b, c) {
        // 0.0.0.0 reaches the local host on Linux; the rest of 0/8 is "this network".
        (0, _, _) => "this_network",
        (10, _, _) => "private",
        (100, 64..=127, _) => "cgnat",
        (127, _, _) => "loopback",
        // AWS, GCP, Azure, OpenStack metadata; the rest of 169.254/16 is link-local too.
        (169, 254, 169) if d == 254 => "cloud_metadata",
        (169, 254, _) => "link_local",
        (172, 16..=31, _) => "private",
        // Includes Oracle Cloud's metadata at 192.0.0.192 and the DS-Lite/NAT64 helpers.
        (192, 0, 0) => "ietf_protocol",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        // The deprecated 6to4 relay anycast (RFC 7526).
        (192, 88, 99) => "reserved",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (255, 255, 255) if d == 255 => "broadcast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(name)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // ::ffff:a.b.c.d, v4-mapped: a dual-stack socket connects to a.b.c.d itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return blocked_v4(v4);
    }
    // ::a.b.c.d, v4-compatible: deprecated (RFC 4291), never legitimately on the wire.
    if seg[..6] == [0; 6] {
        return Some("reserved");
    }
    // 64:ff9b::/96, the well-known NAT64 prefix: the translator forwards to the embedded
    // IPv4 address, so it is only as reachable as that address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return blocked_v4(embedded_v4(seg[6], seg[7]));
    }
    // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): where the IPv4 address sits depends on
    // the operator's prefix length, so it cannot be checked; refuse all of it.
    if seg[..3] == [0x64, 0xff9b, 1] {
        return Some("nat64_local");
    }
    // 2002::/16, 6to4: the relay forwards to the IPv4 address in bits 16..48.
    if seg[0] == 0x2002 {
        return blocked_v4(embedded_v4(seg[1], seg[2]));
    }
    let name = match seg[0] {
        // 100::/64, discard-only (RFC 6666).
        0x0100 if seg[1..4] == [0; 3] => "discard",
        // 2001::/23: Teredo (2001::/32), ORCHID, AMT and the other IETF protocol assignments.
        0x2001 if seg[1] < 0x0200 => "ietf_protocol",
        0x2001 if seg[1] == 0x0db8 => "documentation",
        // 3fff::/20, documentation (RFC 9637).
        0x3fff if seg[1] < 0x1000 => "documentation",
        // 5f00::/16, SRv6 segment identifiers (RFC 9602).
        0x5f00 => "srv6",
        0xfc00..=0xfdff => "unique_local",
        0xfe80..=0xfebf => "link_local",
        0xfec0..=0xfeff => "site_local",
        0xff00..=0xffff => "multicast",
        // Only 2000::/3 is allocated for global unicast; the rest is IETF reserved.
        0x2000..=0x3fff => return None,
        _ => "reserved",
    };
    Some(name)
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Option<&'static str> {
        blocked_range(s.parse().unwrap())
    }

    #[track_caller]
    fn assert_blocked(cases: &[(&str, &str)]) {
        for (addr, want) in cases {
            assert_eq!(
                range(addr),
                Some(*want),
                "{addr} should be blocked as {want}"
            );
        }
    }

    #[track_caller]
    fn assert_allowed(cases: &[&str]) {
        for addr in cases {
            assert_eq!(
                range(addr),
                None,
                "{addr} is global unicast and should be allowed"
            );
        }
    }

    #[test]
    fn ipv4_special_ranges_are_blocked_at_both_ends() {
        assert_blocked(&[
            ("0.0.0.0", "this_network"),
            ("0.255.255.255", "this_network"),
            ("10.0.0.0", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.0", "cgnat"),
            ("100.100.100.200", "cgnat"), // Alibaba Cloud metadata
            ("100.127.255.255", "cgnat"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.0.1", "link_local"),
            ("169.254.169.254", "cloud_metadata"),
            ("169.254.169.253", "link_local"),
            ("169.254.255.255", "link_local"),
            ("172.16.0.0", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.0", "ietf_protocol"),
            ("192.0.0.192", "ietf_protocol"), // Oracle Cloud metadata
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "reserved"),
            ("192.168.0.1", "private"),
            ("192.168.255.255", "private"),
            ("198.18.0.0", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
        ]);
    }

    #[test]
    fn ipv4_neighbours_of_blocked_ranges_are_allowed() {
        assert_allowed(&[
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "203.0.112.255",
            "223.255.255.255",
        ]);
    }

    #[test]
    fn ipv6_special_ranges_are_blocked() {
        assert_blocked(&[
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::2", "reserved"),
            ("::7f00:1", "reserved"),  // v4-compatible ::127.0.0.1
            ("::808:808", "reserved"), // v4-compatible ::8.8.8.8, deprecated whatever inside
            ("64:ff9b:1::1", "nat64_local"),
            ("64:ff9b:1:ffff::1", "nat64_local"),
            ("100::", "discard"),
            ("100::ffff:ffff:ffff:ffff", "discard"),
            ("2001::1", "ietf_protocol"), // Teredo
            ("2001:1ff:ffff::1", "ietf_protocol"),
            ("2001:db8::1", "documentation"),
            ("2001:db8:ffff::1", "documentation"),
            ("3fff::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("5f00::1", "srv6"),
            ("fc00::1", "unique_local"),
            ("fd00:ec2::254", "unique_local"), // AWS IPv6 metadata
            ("fdff:ffff::1", "unique_local"),
            ("fe80::1", "link_local"),
            ("febf:ffff::1", "link_local"),
            ("fec0::1", "site_local"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("4000::1", "reserved"),
            ("1::1", "reserved"),
            ("e000::1", "reserved"),
        ]);
    }

    #[test]
    fn ipv6_global_unicast_is_allowed() {
        assert_allowed(&[
            "2000::1",
            "2001:200::1", // just past 2001::/23
            "2001:4860:4860::8888",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "3ffe::1",
            "3fff:1000::1",
        ]);
        // 100::/64 only: the next /64 is outside the discard range but not in 2000::/3.
        assert_eq!(range("100:0:0:1::1"), Some("reserved"));
    }

    #[test]
    fn v4_mapped_is_judged_by_the_embedded_address() {
        assert_blocked(&[
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:7f00:1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "cloud_metadata"),
            ("::ffff:0.0.0.0", "this_network"),
            ("::ffff:100.64.0.1", "cgnat"),
            ("::ffff:224.0.0.1", "multicast"),
        ]);
        assert_allowed(&["::ffff:8.8.8.8", "::ffff:1.1.1.1"]);
    }

    #[test]
    fn nat64_well_known_prefix_is_judged_by_the_embedded_address() {
        assert_blocked(&[
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a00:1", "private"),
            ("64:ff9b::169.254.169.254", "cloud_metadata"),
            ("64:ff9b::192.168.1.1", "private"),
        ]);
        assert_allowed(&["64:ff9b::8.8.8.8", "64:ff9b::101:101"]);
        // Outside the /96: the bits between are not zero, so it is not NAT64 at all.
        assert_eq!(range("64:ff9b:0:1::8.8.8.8"), Some("reserved"));
    }

    #[test]
    fn six_to_four_is_judged_by_the_embedded_address() {
        assert_blocked(&[
            ("2002:7f00:1::", "loopback"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:a00:1::1", "private"),
            ("2002:a9fe:a9fe::1", "cloud_metadata"),
            ("2002:c0a8:101::1", "private"),
            ("2002::1", "this_network"),
        ]);
        assert_allowed(&["2002:808:808::1", "2002:101:101:1::1"]);
    }

    #[test]
    fn is_blocked_agrees_with_the_classifier() {
        for s in [
            "127.0.0.1",
            "::1",
            "8.8.8.8",
            "2606:4700::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(is_blocked(ip), blocked_range(ip).is_some(), "{s}");
        }
    }
}
