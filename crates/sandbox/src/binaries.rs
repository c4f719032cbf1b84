//! Finding the programs the sandbox runs.
//!
//! The control plane (kube-apiserver, kube-controller-manager, kube-scheduler 1.20.2) is looked up
//! in `$KUBEBUILDER_ASSETS` first (controller-runtime's envtest convention: the binaries side by
//! side), then in the cache `scripts/setup.sh` builds into
//! (`$NEWAPI_OPS_CACHE/k8s-1.20.2/bin`, else `${XDG_CACHE_HOME:-~/.cache}/newapi-ops/k8s-1.20.2/bin`).
//! etcd comes from those directories or PATH; MariaDB and Redis from PATH (and /usr/sbin, where
//! Debian puts `mariadbd`).

use std::path::{Path, PathBuf};

use super::SandboxError;

/// The Kubernetes version the sandbox is built and tested with.
pub const K8S_VERSION: &str = "1.20.2";

/// Absolute paths of every program the sandbox starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub mariadbd: PathBuf,
    pub mariadb_install_db: PathBuf,
    pub redis_server: PathBuf,
}

impl Binaries {
    /// Finds every program, or names all the missing ones at once.
    pub fn locate() -> Result<Self, SandboxError> {
        let asset_dirs = control_plane_dirs();
        let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let mut system_dirs = path_dirs.clone();
        for extra in ["/usr/sbin", "/usr/local/sbin", "/sbin"] {
            let extra = PathBuf::from(extra);
            if !system_dirs.contains(&extra) {
                system_dirs.push(extra);
            }
        }
        let mut etcd_dirs = asset_dirs.clone();
        etcd_dirs.extend(path_dirs);

        let mut missing = Vec::new();
        let mut find = |name: &str, dirs: &[PathBuf]| -> PathBuf {
            find_in(name, dirs).unwrap_or_else(|| {
                missing.push(name.to_string());
                PathBuf::new()
            })
        };
        let found = Binaries {
            kube_apiserver: find("kube-apiserver", &asset_dirs),
            kube_controller_manager: find("kube-controller-manager", &asset_dirs),
            kube_scheduler: find("kube-scheduler", &asset_dirs),
            etcd: find("etcd", &etcd_dirs),
            mariadbd: find("mariadbd", &system_dirs),
            mariadb_install_db: find("mariadb-install-db", &system_dirs),
            redis_server: find("redis-server", &system_dirs),
        };
        if missing.is_empty() {
            Ok(found)
        } else {
            let mut looked = asset_dirs;
            looked.push(PathBuf::from("$PATH"));
            Err(SandboxError::MissingBinaries { missing, looked })
        }
    }
}

/// Where the control-plane binaries may be, in order of preference.
pub fn control_plane_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(assets) = non_empty_env("KUBEBUILDER_ASSETS") {
        dirs.push(PathBuf::from(assets));
    }
    dirs.push(cache_dir().join(format!("k8s-{K8S_VERSION}")).join("bin"));
    dirs
}

/// newapi-ops' cache directory, as `scripts/setup.sh` computes it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("NEWAPI_OPS_CACHE") {
        return PathBuf::from(dir);
    }
    let base = non_empty_env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("newapi-ops")
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

fn find_in(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_executable_and_skips_plain_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("data");
        std::fs::write(&plain, "x").unwrap();
        let dirs = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
        assert_eq!(find_in("tool", &dirs), Some(exe));
        assert_eq!(find_in("data", &dirs), None);
    }
}
