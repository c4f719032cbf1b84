//! The sandbox's network namespace: where the metrics server listens, so that the API server's
//! aggregation layer can reach it (it refuses loopback endpoints).
//!
//! `up` creates a namespace `newapi-ops-<hash>` and a veth pair whose two ends hold the two usable
//! addresses of a /30 in 10.254.0.0/16. The names are derived from the sandbox directory, so a
//! given directory always gets the same names and a crashed run's leftovers are found (and
//! removed) by name. The /30 starts at a block derived from the directory too, but is the first
//! one from there that no address or route of the host overlaps, chosen under a lock: two
//! sandboxes (or one and a leftover of a killed run) whose directories hash to the same block
//! would otherwise both route 10.254.x.2, and one API server would reach the other's metrics
//! server. Only the host and that namespace are on the link: nothing is routed elsewhere.
//!
//! The metrics server itself runs in the host's namespace (it talks to the API server on
//! 127.0.0.1) and only its listening socket is created inside the namespace ([`bind_in`]): a
//! socket keeps the namespace it was made in.
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and `ip` from iproute2;
//! [`unavailable`] says why not when they are missing.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SandboxError;

/// The port the metrics server listens on inside the namespace.
pub const METRICS_PORT: u16 = 443;

/// The names and addresses of one sandbox's namespace and link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsPlan {
    /// The network namespace (`ip netns` name).
    pub name: String,
    /// The veth end on the host.
    pub host_if: String,
    /// The veth end inside the namespace.
    pub ns_if: String,
    /// The host end's address (/30).
    pub host_addr: Ipv4Addr,
    /// The namespace end's address (/30): where the metrics server listens.
    pub ns_addr: Ipv4Addr,
}

/// How many /30 blocks 10.254.0.0/16 holds.
const BLOCKS: u32 = 1 << 14;

impl NetnsPlan {
    /// The plan for the sandbox in `dir` (an absolute path), with the /30 it prefers; [`create`]
    /// moves it on to a free one.
    pub fn for_dir(dir: &Path) -> NetnsPlan {
        let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let block = (u32::from(digest[4]) << 8 | u32::from(digest[5])) % BLOCKS;
        let mut plan = NetnsPlan {
            name: format!("newapi-ops-{tag}"),
            host_if: format!("nao{tag}h"),
            ns_if: format!("nao{tag}n"),
            host_addr: Ipv4Addr::UNSPECIFIED,
            ns_addr: Ipv4Addr::UNSPECIFIED,
        };
        plan.set_block(block);
        plan
    }

    fn block(&self) -> u32 {
        (u32::from(self.host_addr) - u32::from(Ipv4Addr::new(10, 254, 0, 0))) / 4
    }

    fn set_block(&mut self, block: u32) {
        let base = u32::from(Ipv4Addr::new(10, 254, 0, 0)) + (block % BLOCKS) * 4;
        self.host_addr = Ipv4Addr::from(base + 1);
        self.ns_addr = Ipv4Addr::from(base + 2);
    }

    /// Where the metrics server listens.
    pub fn metrics_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ns_addr, METRICS_PORT)
    }
}

/// A network the host already has (an address with its prefix, or a route's destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Net {
    fn parse(text: &str) -> Option<Net> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, p.parse().ok().filter(|p| *p <= 32)?),
            None => (text, 32),
        };
        Some(Net {
            addr: addr.parse().ok()?,
            prefix,
        })
    }

    /// Whether this network and the /30 at `base` share an address. Networks wider than a /16
    /// (a default route, a 10.0.0.0/8 LAN) do not count: the /30 is more specific and wins for its
    /// four addresses without taking anything from anyone else.
    fn overlaps(&self, base: u32) -> bool {
        if self.prefix < 16 {
            return false;
        }
        let bits = u32::from(self.prefix.min(30));
        let mask = u32::MAX << (32 - bits);
        u32::from(self.addr) & mask == base & mask
    }
}

/// The first block from `preferred` on (wrapping) that none of `used` overlaps.
fn first_free_block(preferred: u32, used: &[Net]) -> Option<u32> {
    let start = u32::from(Ipv4Addr::new(10, 254, 0, 0));
    (0..BLOCKS)
        .map(|i| (preferred + i) % BLOCKS)
        .find(|block| !used.iter().any(|n| n.overlaps(start + block * 4)))
}

/// The host's IPv4 addresses and route destinations, as `ip` prints them.
fn host_networks() -> Result<Vec<Net>, String> {
    let addrs = ip_output(&["-4", "-o", "addr", "show"])?;
    let routes = ip_output(&["-4", "route", "show", "table", "all"])?;
    Ok(networks_in(&addrs, &routes))
}

/// The networks in `ip -4 -o addr show` (the word after `inet`, as its network and as the
/// address itself) and `ip -4 route show table all` (the first word that is an address).
fn networks_in(addrs: &str, routes: &str) -> Vec<Net> {
    let mut nets = Vec::new();
    for line in addrs.lines() {
        let mut words = line.split_whitespace();
        if words.by_ref().any(|w| w == "inet")
            && let Some(net) = words.next().and_then(Net::parse)
        {
            // The address itself too: on a network wider than a /16 it would not count.
            nets.extend([net, Net { prefix: 32, ..net }]);
        }
    }
    for line in routes.lines() {
        // `10.0.0.0/24 dev …`, or a route type first: `local 127.0.0.1 dev lo table local …`.
        nets.extend(line.split_whitespace().take(2).find_map(Net::parse));
    }
    nets
}

/// Why the namespace cannot be made here, or None when it can (root, and `ip` runs).
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root (a network namespace needs CAP_NET_ADMIN)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("`ip -V` failed ({})", o.status)),
        Err(e) => Some(format!("`ip` (iproute2) cannot be run: {e}")),
    }
}

/// Runs `ip ARGS`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    ip_output(args).map(drop)
}

/// Runs `ip ARGS` and returns what it printed; the error carries its stderr.
fn ip_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Where concurrent `up`s take turns choosing a free /30 (root only, like the rest of this).
const LOCK_FILE: &str = "/run/newapi-ops-netns.lock";

/// Creates the namespace and the link for the sandbox in `dir`, after removing any leftover of
/// the same names, on the first /30 from the directory's own that the host does not use yet.
/// Returns the plan with the addresses it got.
pub fn create(dir: &Path) -> Result<NetnsPlan, SandboxError> {
    let mut plan = NetnsPlan::for_dir(dir);
    remove(&plan);
    let failed = |plan: &NetnsPlan, detail: String| SandboxError::Netns {
        name: plan.name.clone(),
        detail,
    };
    // Held until the address is on the link, so that the next `up` sees it taken.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .map_err(|e| failed(&plan, format!("opening {LOCK_FILE}: {e}")))?;
    lock.lock()
        .map_err(|e| failed(&plan, format!("locking {LOCK_FILE}: {e}")))?;
    let used = host_networks().map_err(|e| failed(&plan, e))?;
    let block = first_free_block(plan.block(), &used).ok_or_else(|| {
        failed(
            &plan,
            "every /30 of 10.254.0.0/16 is already an address or a route of this host \
             (`ip -4 addr` and `ip -4 route` show them)"
                .into(),
        )
    })?;
    plan.set_block(block);
    create_on(&plan)?;
    drop(lock);
    Ok(plan)
}

/// Creates the namespace and the link of `plan`; on failure, removes what was made.
fn create_on(plan: &NetnsPlan) -> Result<(), SandboxError> {
    let host = format!("{}/30", plan.host_addr);
    let inner = format!("{}/30", plan.ns_addr);
    let steps: [&[&str]; 7] = [
        &["netns", "add", &plan.name],
        &[
            "link",
            "add",
            &plan.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &plan.ns_if,
            "netns",
            &plan.name,
        ],
        &["addr", "add", &host, "dev", &plan.host_if],
        &["link", "set", &plan.host_if, "up"],
        &["-n", &plan.name, "addr", "add", &inner, "dev", &plan.ns_if],
        &["-n", &plan.name, "link", "set", &plan.ns_if, "up"],
        &["-n", &plan.name, "link", "set", "lo", "up"],
    ];
    for step in steps {
        if let Err(detail) = ip(step) {
            remove(plan);
            return Err(SandboxError::Netns {
                name: plan.name.clone(),
                detail,
            });
        }
    }
    Ok(())
}

/// Removes the link and the namespace if they exist (errors are ignored: either may be gone).
/// Returns whether anything was there.
pub fn remove(plan: &NetnsPlan) -> bool {
    // Deleting one end of a veth pair deletes both; the namespace's name goes with `netns del`
    // (the namespace itself when no socket holds it any more).
    let link = ip(&["link", "del", &plan.host_if]).is_ok();
    let ns = ip(&["netns", "del", &plan.name]).is_ok();
    link || ns
}

/// Creates a listening TCP socket on `addr` inside the namespace `name`, from a short-lived
/// thread that enters the namespace (the rest of the process stays where it is).
pub fn bind_in(name: &str, addr: SocketAddrV4) -> std::io::Result<std::net::TcpListener> {
    let path = Path::new("/run/netns").join(name);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
    .join()
    .map_err(|_| std::io::Error::other("the thread entering the network namespace panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Net {
        Net::parse(text).expect(text)
    }

    #[test]
    fn a_block_the_host_uses_is_skipped_for_the_next_free_one() {
        let a = NetnsPlan::for_dir(Path::new("/tmp/sandbox-a"));
        let preferred = a.block();
        // Nothing in the way: the directory's own block.
        let unrelated = [net("127.0.0.1/8"), net("192.168.1.7/24"), net("10.0.0.0/8")];
        assert_eq!(first_free_block(preferred, &unrelated), Some(preferred));
        // Another sandbox's host end (or a leftover of a killed run) on the same /30.
        let taken = [net(&format!("{}/30", a.host_addr))];
        assert_eq!(
            first_free_block(preferred, &taken),
            Some((preferred + 1) % BLOCKS)
        );
        // A route to a /24 around it takes 64 blocks; a single address one.
        let mut b = a.clone();
        b.set_block(preferred);
        let wide = [net(&format!("{}/24", b.ns_addr))];
        let free = first_free_block(preferred, &wide).unwrap();
        let mut got = a.clone();
        got.set_block(free);
        assert_ne!(got.host_addr.octets()[2], a.host_addr.octets()[2]);
        assert_eq!(
            first_free_block(
                preferred,
                &[Net {
                    addr: a.ns_addr,
                    prefix: 32
                }]
            ),
            Some((preferred + 1) % BLOCKS)
        );
        // The last block wraps round to the first.
        let last = [net("10.254.255.253/30")];
        assert_eq!(first_free_block(BLOCKS - 1, &last), Some(0));
        // All of 10.254.0.0/16 in use: none.
        assert_eq!(first_free_block(preferred, &[net("10.254.0.0/16")]), None);
    }

    #[test]
    fn host_networks_are_read_from_what_ip_prints() {
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 10.254.7.9/8 brd 10.255.255.255 scope global eth0\\       valid_lft forever
5: naoab12cd34h    inet 10.254.76.1/30 scope global naoab12cd34h\\       valid_lft forever";
        let routes = "default via 10.0.0.1 dev eth0
10.254.76.0/30 dev naoab12cd34h proto kernel scope link src 10.254.76.1
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 10.255.255.255 dev eth0 table local proto kernel scope link src 10.254.7.9";
        let nets = networks_in(addrs, routes);
        for n in [
            "127.0.0.1/8",
            "127.0.0.1/32",
            "10.254.7.9/8",
            "10.254.7.9/32",
            "10.254.76.1/30",
            "10.254.76.0/30",
            "10.255.255.255/32",
        ] {
            assert!(nets.contains(&net(n)), "{n} missing from {nets:?}");
        }
        assert_eq!(nets.len(), 9, "{nets:?}");
        // The host's own address on a /8 keeps its block taken; the rest of the /8 does not.
        let own =
            (u32::from(Ipv4Addr::new(10, 254, 7, 9)) - u32::from(Ipv4Addr::new(10, 254, 0, 0))) / 4;
        assert_eq!(first_free_block(own, &nets), Some(own + 1));

        assert_eq!(Net::parse("10.254.76.1/30"), Some(net("10.254.76.1/30")));
        assert_eq!(
            Net::parse("10.1.2.3"),
            Some(Net {
                addr: Ipv4Addr::new(10, 1, 2, 3),
                prefix: 32
            })
        );
        assert_eq!(Net::parse("default"), None);
        assert_eq!(Net::parse("10.1.2.3/33"), None);
    }

    #[test]
    fn plans_are_stable_and_fit_the_limits() {
        let a = NetnsPlan::for_dir(Path::new("/tmp/sandbox-a"));
        assert_eq!(a, NetnsPlan::for_dir(Path::new("/tmp/sandbox-a")));
        let b = NetnsPlan::for_dir(Path::new("/tmp/sandbox-b"));
        assert_ne!(a.name, b.name);
        // Linux interface names: at most 15 bytes.
        assert!(a.host_if.len() <= 15 && a.ns_if.len() <= 15);
        let host = a.host_addr.octets();
        let inner = a.ns_addr.octets();
        assert_eq!((host[0], host[1]), (10, 254));
        assert_eq!(host[3] % 4, 1, "first usable address of a /30");
        assert_eq!(u32::from(a.ns_addr), u32::from(a.host_addr) + 1);
        assert_eq!(inner[3] % 4, 2);
    }
}
