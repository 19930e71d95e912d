//! A small network of this machine's own: network namespaces joined by veth pairs to a bridge
//! in a hub namespace, plus one veth into the test's namespace, so the test reaches every host
//! and the hosts reach each other over a real (virtual) link. Faults are nftables rules inside
//! a host's namespace: partitions (drops), random packet loss (`numgen random`), and detours
//! through a delaying proxy (DNAT of one peer's address). Everything is removed on drop.
//!
//! Needs root (CI runs as root) and Debian's `iproute2` and `nftables`; panics with the
//! command's error otherwise, never skips.
//!
//! This kernel has no `sch_netem` (`tc qdisc add ... netem` answers "Specified qdisc kind is
//! unknown"), so loss is nftables' and latency a proxy's.

use std::net::Ipv4Addr;
use std::process::Command;

/// Runs `program args`, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (install iproute2 and nftables): {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed (the network fault tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Lab {
    /// Prefix of every name this lab made (interfaces: at most 15 bytes with a suffix).
    tag: String,
    subnet: u8,
    hub: String,
    hosts: usize,
}

impl Lab {
    /// `hosts` namespaces at 10.213.S.1.. and the test's side at 10.213.S.254, S picked from
    /// the process id so that two test binaries do not collide.
    pub fn new(hosts: usize) -> Lab {
        let pid = std::process::id();
        let tag = format!("cz{}", pid % 100_000);
        let subnet = (pid % 200) as u8 + 20;
        let lab = Lab {
            hub: format!("{tag}hub"),
            tag,
            subnet,
            hosts,
        };
        // A lab left by a killed run of the same pid would fail the first command.
        lab.remove();
        let hub = lab.hub.as_str();
        run("ip", &["netns", "add", hub]);
        lab.in_ns(hub, "ip", &["link", "add", "br0", "type", "bridge"]);
        lab.in_ns(hub, "ip", &["link", "set", "br0", "up"]);
        for i in 0..hosts {
            let ns = lab.ns(i);
            let (h, e) = (format!("{}h{i}", lab.tag), format!("{}e{i}", lab.tag));
            run("ip", &["netns", "add", &ns]);
            run(
                "ip",
                &["link", "add", &h, "type", "veth", "peer", "name", &e],
            );
            run("ip", &["link", "set", &h, "netns", hub]);
            run("ip", &["link", "set", &e, "netns", &ns]);
            lab.in_ns(hub, "ip", &["link", "set", &h, "master", "br0"]);
            lab.in_ns(hub, "ip", &["link", "set", &h, "up"]);
            lab.in_ns(&ns, "ip", &["link", "set", &e, "name", "eth0"]);
            let addr = format!("{}/24", lab.ip(i));
            lab.in_ns(&ns, "ip", &["addr", "add", &addr, "dev", "eth0"]);
            lab.in_ns(&ns, "ip", &["link", "set", "eth0", "up"]);
            lab.in_ns(&ns, "ip", &["link", "set", "lo", "up"]);
            // One table per host for every fault: input/output filters and an output NAT.
            lab.in_ns(&ns, "nft", &["add", "table", "inet", "fault"]);
            for (chain, spec) in [
                (
                    "in",
                    "{ type filter hook input priority 0; policy accept; }",
                ),
                (
                    "out",
                    "{ type filter hook output priority 0; policy accept; }",
                ),
                (
                    "nat",
                    "{ type nat hook output priority -100; policy accept; }",
                ),
            ] {
                lab.in_ns(&ns, "nft", &["add", "chain", "inet", "fault", chain, spec]);
            }
        }
        let (r, rh) = (format!("{}r", lab.tag), format!("{}rh", lab.tag));
        run(
            "ip",
            &["link", "add", &r, "type", "veth", "peer", "name", &rh],
        );
        run("ip", &["link", "set", &rh, "netns", hub]);
        lab.in_ns(hub, "ip", &["link", "set", &rh, "master", "br0"]);
        lab.in_ns(hub, "ip", &["link", "set", &rh, "up"]);
        let addr = format!("{}/24", lab.test_ip());
        run("ip", &["addr", "add", &addr, "dev", &r]);
        run("ip", &["link", "set", &r, "up"]);
        lab
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, i as u8 + 1)
    }

    /// The test's own address on the lab's link.
    pub fn test_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 254)
    }

    fn in_ns(&self, ns: &str, program: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", ns, program];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    fn nft(&self, host: usize, rule: &str) {
        let ns = self.ns(host);
        let mut args = vec!["add", "rule", "inet", "fault"];
        args.extend(rule.split(' '));
        self.in_ns(&ns, "nft", &args);
    }

    /// Host `i` drops every packet from and to the other hosts and the test: cut off.
    pub fn isolate(&self, i: usize) {
        self.nft(i, "in iifname eth0 drop");
        self.nft(i, "out oifname eth0 drop");
    }

    /// Host `i` drops what host `from` sends it; its own packets still leave.
    pub fn drop_from(&self, i: usize, from: usize) {
        self.nft(i, &format!("in ip saddr {} drop", self.ip(from)));
    }

    /// Host `i` loses `percent`% of the packets it sends, at random.
    pub fn loss(&self, i: usize, percent: u32) {
        self.nft(
            i,
            &format!("out oifname eth0 numgen random mod 100 < {percent} drop"),
        );
    }

    /// Host `i`'s connections to `to:port` go to `via` instead (a proxy in the test's
    /// namespace), without the program knowing.
    pub fn detour(&self, i: usize, to: usize, port: u16, via: std::net::SocketAddr) {
        self.nft(
            i,
            &format!(
                "nat ip daddr {} tcp dport {port} dnat ip to {via}",
                self.ip(to)
            ),
        );
    }

    /// Removes every fault of host `i`.
    pub fn heal(&self, i: usize) {
        let ns = self.ns(i);
        for chain in ["in", "out", "nat"] {
            self.in_ns(&ns, "nft", &["flush", "chain", "inet", "fault", chain]);
        }
    }

    pub fn heal_all(&self) {
        for i in 0..self.hosts {
            self.heal(i);
        }
    }

    fn remove(&self) {
        for i in 0..self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}r", self.tag)])
            .output();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remove();
    }
}
