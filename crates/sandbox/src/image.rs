//! The tool's own container image, [`IMAGE`] (`newapi-ops:<version>`): the one image the kubelet
//! simulator runs for real (with `runc`), so that what the tool does inside a cluster — a backup
//! CronJob, load workers, a monitor — runs in the sandbox as it would on a cluster.
//!
//! `sandbox up` builds it from the binary that runs the sandbox, with `scripts/image.sh` (embedded
//! here, so the sandbox builds exactly what the script builds: an OCI layout from scratch, made by
//! `umoci`, no daemon, no network), into a cache keyed by that binary, and copies the layout into
//! `DIR/image`. The build is reproducible, so an image built by hand from the same binary has the
//! same digest. Without root, `runc` or `umoci` there is no image: [`unavailable`] says why, and
//! the simulator fails pods of the image with `ErrImageNeverPull` and that reason.
//!
//! A pod runs the image when its container's `image` is [`IMAGE`] (also spelled
//! `docker.io/library/newapi-ops:<version>` or `localhost/newapi-ops:<version>`, or by digest
//! `newapi-ops@sha256:…`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The image's repository name.
pub const NAME: &str = "newapi-ops";
/// Its tag: the version of newapi-ops (this crate is versioned with the tool).
pub const TAG: &str = env!("CARGO_PKG_VERSION");
/// The reference a pod names to run the tool: `newapi-ops:<version>`.
pub const IMAGE: &str = concat!("newapi-ops:", env!("CARGO_PKG_VERSION"));

/// `scripts/image.sh`, run by [`build_or_load`].
const SCRIPT: &str = include_str!("../../../scripts/image.sh");

/// How many built images the cache keeps (one per binary; each is about 20 MB compressed).
const CACHE_KEEP: usize = 3;

/// Programs needed to build and run the image.
const PROGRAMS: &[&str] = &["runc", "umoci", "tar", "ldd", "bash"];

/// Why pods of the image cannot run here, or `None` when they can (root, and the programs of
/// [`PROGRAMS`] on PATH).
pub fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some(
            "real containers need root (runc runs them as root here); pods of the image \
             cannot start without it"
                .into(),
        );
    }
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "{} not installed (scripts/setup.sh installs them; Debian: apt-get install runc umoci)",
            missing.join(", ")
        ))
    }
}

/// The absolute path of `name` on PATH (or in /usr/sbin, /sbin), if it is there.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A built image, copied into a sandbox directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// [`IMAGE`].
    pub reference: String,
    /// The manifest digest, `sha256:…`.
    pub digest: String,
    /// The OCI layout (tag [`TAG`]).
    pub layout: PathBuf,
    /// Whether it came from the cache (no build).
    pub cached: bool,
}

/// Builds the image of `binary` (or takes it from the cache, `<cache>/images`) and copies its OCI
/// layout to `layout`. The build's output goes to `log`. Blocking: minutes of CPU at worst (the
/// layer is compressed), a few milliseconds from the cache.
pub fn build_or_load(binary: &Path, layout: &Path, log: &Path) -> Result<Built, String> {
    let cache = crate::binaries::cache_dir().join("images");
    create_private_dir(&cache)?;
    let key = cache_key(binary)?;
    let entry = cache.join(&key);
    let lock_path = cache.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    // One build at a time (tests start sandboxes in parallel from the same binary).
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let digest_file = entry.join("digest");
    let cached_layout = entry.join("layout");
    let (digest, cached) = match std::fs::read_to_string(&digest_file) {
        Ok(d) if cached_layout.join("index.json").is_file() => (d.trim().to_string(), true),
        _ => {
            let _ = std::fs::remove_dir_all(&entry);
            create_private_dir(&entry)?;
            let digest = run_script(binary, &entry, &cached_layout, log)?;
            std::fs::write(&digest_file, format!("{digest}\n"))
                .map_err(|e| format!("writing {}: {e}", digest_file.display()))?;
            prune(&cache, &key);
            (digest, false)
        }
    };
    // Touched on use, so that pruning keeps the images in use.
    let _ = std::fs::File::options()
        .append(true)
        .open(&digest_file)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    copy_layout(&cached_layout, layout)?;
    drop(lock);
    Ok(Built {
        reference: IMAGE.to_string(),
        digest,
        layout: layout.to_path_buf(),
        cached,
    })
}

/// The cache key of `binary`: its path, size, modification time and inode (a rebuilt binary gets
/// a new key), the script and the tag.
fn cache_key(binary: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
    let mut h = Sha256::new();
    h.update(binary.as_os_str().as_encoded_bytes());
    h.update(
        format!(
            "\0{}\0{}\0{}\0{}\0{}\0",
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino(),
            TAG
        )
        .as_bytes(),
    );
    h.update(SCRIPT.as_bytes());
    Ok(h.finalize()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Runs the embedded script: `bash image.sh --binary B --out OUT --tag TAG`; returns the digest.
fn run_script(binary: &Path, entry: &Path, out: &Path, log: &Path) -> Result<String, String> {
    let script = entry.join("image.sh");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("writing {}: {e}", script.display()))?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    let bash = find_program("bash").ok_or("bash is not installed")?;
    let output = Command::new(bash)
        .arg(&script)
        .arg("--binary")
        .arg(binary)
        .arg("--out")
        .arg(out)
        .arg("--tag")
        .arg(TAG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "scripts/image.sh failed ({}); its output is in {}",
            output.status,
            log.display()
        ));
    }
    let digest = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !digest.starts_with("sha256:") {
        return Err(format!(
            "scripts/image.sh printed {digest:?}, not a digest; see {}",
            log.display()
        ));
    }
    Ok(digest)
}

/// Keeps the [`CACHE_KEEP`] most recently used entries (and `keep`).
fn prune(cache: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != keep)
        .map(|e| {
            let used = std::fs::metadata(e.path().join("digest"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (used, e.path())
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in found.into_iter().skip(CACHE_KEEP.saturating_sub(1)) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Copies an OCI layout: blobs are hard links where possible (they are content-addressed and
/// never written again), the small files are copies.
fn copy_layout(from: &Path, to: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(to);
    let blobs = to.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("creating {}: {e}", blobs.display()))?;
    for name in ["index.json", "oci-layout"] {
        std::fs::copy(from.join(name), to.join(name))
            .map_err(|e| format!("copying {}: {e}", from.join(name).display()))?;
    }
    let src = from.join("blobs").join("sha256");
    let entries = std::fs::read_dir(&src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    for e in entries.flatten() {
        let target = blobs.join(e.file_name());
        if std::fs::hard_link(e.path(), &target).is_err() {
            std::fs::copy(e.path(), &target)
                .map_err(|err| format!("copying {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))
}

// ---------------------------------------------------------------------------------------------
// Reading a layout
// ---------------------------------------------------------------------------------------------

/// What a container of the image starts as, from its OCI config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// The manifest digest.
    pub digest: String,
    /// `User` (`uid`, `uid:gid`, or a name).
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: ConfigBody,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigBody {
    user: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
}

/// Reads the config of the image tagged `tag` in the OCI layout `layout`.
pub fn inspect(layout: &Path, tag: &str) -> Result<ImageConfig, String> {
    let index: Index = read_json(&layout.join("index.json"))?;
    let manifest = index
        .manifests
        .iter()
        .find(|m| {
            m.annotations
                .get("org.opencontainers.image.ref.name")
                .is_some_and(|t| t == tag)
        })
        .ok_or_else(|| format!("{} has no image tagged {tag}", layout.display()))?;
    let manifest_body: Manifest = read_json(&blob(layout, &manifest.digest)?)?;
    let config: ConfigFile = read_json(&blob(layout, &manifest_body.config.digest)?)?;
    let c = config.config;
    Ok(ImageConfig {
        digest: manifest.digest.clone(),
        user: c.user.filter(|u| !u.is_empty()),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
    })
}

fn blob(layout: &Path, digest: &str) -> Result<PathBuf, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("unsupported digest {digest:?}"))?;
    Ok(layout.join("blobs").join("sha256").join(hex))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_name_and_the_version() {
        assert_eq!(IMAGE, format!("{NAME}:{TAG}"));
        assert!(SCRIPT.contains("umoci raw add-layer"));
    }

    #[test]
    fn inspects_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path();
        std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
        let config = r#"{"config":{"User":"65532:65532","Entrypoint":["/usr/local/bin/newapi-ops"],"Env":["PATH=/usr/local/bin"],"WorkingDir":"/home/nonroot"}}"#;
        let c_hex = format!("{:x}", Sha256::digest(config.as_bytes()));
        std::fs::write(l.join("blobs/sha256").join(&c_hex), config).unwrap();
        let manifest = format!(r#"{{"config":{{"digest":"sha256:{c_hex}"}},"layers":[]}}"#);
        let m_hex = format!("{:x}", Sha256::digest(manifest.as_bytes()));
        std::fs::write(l.join("blobs/sha256").join(&m_hex), &manifest).unwrap();
        std::fs::write(
            l.join("index.json"),
            format!(
                r#"{{"manifests":[{{"digest":"sha256:{m_hex}","annotations":{{"org.opencontainers.image.ref.name":"0.1.0"}}}}]}}"#
            ),
        )
        .unwrap();
        let c = inspect(l, "0.1.0").unwrap();
        assert_eq!(c.digest, format!("sha256:{m_hex}"));
        assert_eq!(c.user.as_deref(), Some("65532:65532"));
        assert_eq!(c.entrypoint, ["/usr/local/bin/newapi-ops"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.working_dir.as_deref(), Some("/home/nonroot"));
        assert!(
            inspect(l, "9.9.9")
                .unwrap_err()
                .contains("no image tagged 9.9.9")
        );
    }

    #[test]
    fn cache_keys_change_with_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("bin");
        std::fs::write(&b, "one").unwrap();
        let k1 = cache_key(&b).unwrap();
        assert_eq!(k1, cache_key(&b).unwrap());
        std::fs::write(&b, "two!").unwrap();
        assert_ne!(k1, cache_key(&b).unwrap());
    }
}
