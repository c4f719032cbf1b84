//! The sandbox's network namespace: where the metrics server listens, so that the API server's
//! aggregation layer can reach it (it refuses loopback endpoints).
//!
//! `up` creates a namespace `newapi-ops-<hash>` and a veth pair whose two ends hold the two usable
//! addresses of a /30 in 10.254.0.0/16, both derived from the sandbox directory, so a given
//! directory always gets the same names and a crashed run's leftovers are found (and removed) by
//! name. Only the host and that namespace are on the link: nothing is routed elsewhere.
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

impl NetnsPlan {
    /// The plan for the sandbox in `dir` (an absolute path).
    pub fn for_dir(dir: &Path) -> NetnsPlan {
        let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        // 16384 /30 blocks in 10.254.0.0/16.
        let block = (u32::from(digest[4]) << 8 | u32::from(digest[5])) & 0x3fff;
        let base = u32::from(Ipv4Addr::new(10, 254, 0, 0)) + block * 4;
        NetnsPlan {
            name: format!("newapi-ops-{tag}"),
            host_if: format!("nao{tag}h"),
            ns_if: format!("nao{tag}n"),
            host_addr: Ipv4Addr::from(base + 1),
            ns_addr: Ipv4Addr::from(base + 2),
        }
    }

    /// Where the metrics server listens.
    pub fn metrics_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ns_addr, METRICS_PORT)
    }
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
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Creates the namespace and the link, after removing any leftover of the same names.
pub fn create(plan: &NetnsPlan) -> Result<(), SandboxError> {
    remove(plan);
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
