//! Container image references, judged the way a kubelet with containerd would.
//!
//! The kubelet first normalises a reference (`redis:7` → `docker.io/library/redis:7`) with the
//! distribution grammar; a reference it cannot parse leaves the container waiting with
//! `InvalidImageName`. A parsable reference is then pulled: in the sandbox a pull fails when the
//! reference mentions `does-not-exist` or the registry host ends in `.invalid` (the TLD reserved
//! for names that never resolve), and succeeds otherwise.

use std::hash::{Hash, Hasher};

/// What happens when the kubelet tries to run a container with this image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageVerdict {
    /// The reference does not parse: waiting reason `InvalidImageName` with this message.
    Invalid { message: String },
    /// The reference parses but the pull fails: `ErrImagePull`, then `ImagePullBackOff`.
    PullFails { message: String },
    /// The image is present (or pulls fine).
    Pulls,
}

/// Whether `image` is the tool's own image, which the sandbox runs for real (`config`: how;
/// `missing`: a reason this simulator cannot run containers after all).
pub fn local(
    image: &str,
    config: &crate::kubelet::config::ContainersConfig,
    missing: Option<&str>,
) -> crate::kubelet::lifecycle::LocalImage {
    use crate::kubelet::lifecycle::LocalImage;
    let Ok(r) = parse_normalized(image) else {
        return LocalImage::NotLocal;
    };
    let name = crate::image::NAME;
    let ours = (r.domain == DEFAULT_DOMAIN && r.path == format!("library/{name}"))
        || (r.domain == "localhost" && r.path == name);
    if !ours {
        return LocalImage::NotLocal;
    }
    let tag = config
        .image
        .rsplit_once(':')
        .map_or(config.image.as_str(), |(_, t)| t);
    let present = match (&r.tag, &r.digest) {
        (_, Some(d)) => config.digest.as_deref() == Some(d.as_str()),
        (Some(t), None) => t == tag,
        (None, None) => false,
    };
    let never = format!("Container image \"{image}\" is not present with pull policy of Never");
    match (config.unavailable.as_deref().or(missing), present) {
        (Some(why), _) => LocalImage::Absent {
            message: format!("{never}: the sandbox runs no real containers: {why}"),
        },
        (None, false) => LocalImage::Absent {
            message: format!(
                "{never}: the sandbox has {} only (built by `sandbox up` from its own binary)",
                config.image
            ),
        },
        (None, true) => LocalImage::Runnable {
            image_id: format!(
                "{DEFAULT_DOMAIN}/library/{name}@{}",
                config.digest.as_deref().unwrap_or_default()
            ),
        },
    }
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io` when the reference names none).
    pub domain: String,
    /// Repository path (`library/redis` for `redis`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// The fully qualified name containerd would pull, e.g. `docker.io/library/redis:7`.
    pub fn normalized(&self) -> String {
        let mut s = format!("{}/{}", self.domain, self.path);
        match (&self.tag, &self.digest) {
            (_, Some(d)) => {
                if let Some(t) = &self.tag {
                    s.push(':');
                    s.push_str(t);
                }
                s.push('@');
                s.push_str(d);
            }
            (Some(t), None) => {
                s.push(':');
                s.push_str(t);
            }
            (None, None) => s.push_str(":latest"),
        }
        s
    }

    /// A stable fake `imageID` for this image, as containerd reports it
    /// (`docker.io/library/redis@sha256:…`).
    pub fn image_id(&self) -> String {
        let digest = match &self.digest {
            Some(d) => d.clone(),
            None => format!("sha256:{}", fake_hex(&[&self.normalized()])),
        };
        format!("{}/{}@{}", self.domain, self.path, digest)
    }
}

const DEFAULT_DOMAIN: &str = "docker.io";
const INVALID_FORMAT: &str = "invalid reference format";
const UPPERCASE: &str = "invalid reference format: repository name must be lowercase";
const NAME_TOO_LONG: &str = "repository name must not be more than 255 characters";

/// Decides what pulling `image` does in the sandbox.
pub fn check(image: &str) -> ImageVerdict {
    let reference = match parse_normalized(image) {
        Ok(r) => r,
        Err(reason) => {
            return ImageVerdict::Invalid {
                message: format!(
                    "Failed to apply default image tag \"{image}\": couldn't parse image reference \"{image}\": {reason}"
                ),
            };
        }
    };
    let full = reference.normalized();
    let host = reference
        .domain
        .split(':')
        .next()
        .unwrap_or(&reference.domain);
    if host.ends_with(".invalid") {
        let manifest = reference
            .digest
            .as_deref()
            .or(reference.tag.as_deref())
            .unwrap_or("latest");
        return ImageVerdict::PullFails {
            message: format!(
                "rpc error: code = Unknown desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": failed to do request: Head \"https://{}/v2/{}/manifests/{manifest}\": dial tcp: lookup {host} on 127.0.0.53:53: no such host",
                reference.domain, reference.path
            ),
        };
    }
    if image.contains("does-not-exist") {
        return ImageVerdict::PullFails {
            message: format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
            ),
        };
    }
    ImageVerdict::Pulls
}

/// Parses `image` like distribution's `ParseNormalizedNamed` (used by the kubelet), returning the
/// error text the kubelet would show.
pub fn parse_normalized(image: &str) -> Result<Reference, String> {
    if image.len() == 64
        && image
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!(
            "invalid repository name ({image}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (domain, remainder) = split_domain(image);
    let remote_name = remainder.split(':').next().unwrap_or(remainder);
    if remote_name.to_ascii_lowercase() != remote_name {
        return Err(UPPERCASE.to_string());
    }
    parse_full(domain, remainder).map_err(str::to_string)
}

/// Splits off the registry host the way docker does: the first component is a host only if it
/// contains `.` or `:` or is `localhost`.
fn split_domain(name: &str) -> (&str, &str) {
    match name.find('/') {
        Some(i) if name[..i].contains(['.', ':']) || &name[..i] == "localhost" => {
            (&name[..i], &name[i + 1..])
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

/// Validates `domain/remainder` against the reference grammar.
fn parse_full(domain: &str, remainder: &str) -> Result<Reference, &'static str> {
    let (name_tag, digest) = match remainder.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (remainder, None),
    };
    let (path, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    };
    if !valid_domain(domain) {
        return Err(INVALID_FORMAT);
    }
    if path.is_empty() || !path.split('/').all(valid_path_component) {
        return Err(INVALID_FORMAT);
    }
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(INVALID_FORMAT);
    }
    if let Some(d) = digest
        && !valid_digest(d)
    {
        return Err(INVALID_FORMAT);
    }
    if domain.len() + 1 + path.len() > 255 {
        return Err(NAME_TOO_LONG);
    }
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    Ok(Reference {
        domain: domain.to_string(),
        path,
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// `domain-component ('.' domain-component)* (':' port)?`
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

/// `[a-z0-9]+ (([._]|__|[-]*) [a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one '_', "__", or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = t.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm ':' hex{32,}`
fn valid_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    !algo.is_empty()
        && algo.as_bytes()[0].is_ascii_alphabetic()
        && algo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A stable 64-hex-digit string derived from `parts` (for fake container and image IDs). Not a
/// cryptographic hash: it only has to look like one and never change while the simulator runs.
pub fn fake_hex(parts: &[&str]) -> String {
    let mut out = String::with_capacity(64);
    for round in 0u8..4 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        round.hash(&mut h);
        for p in parts {
            p.hash(&mut h);
        }
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_docker_hub_names() {
        let r = parse_normalized("redis:7-alpine").unwrap();
        assert_eq!(r.normalized(), "docker.io/library/redis:7-alpine");
        let r = parse_normalized("calciumion/new-api").unwrap();
        assert_eq!(r.normalized(), "docker.io/calciumion/new-api:latest");
        let r = parse_normalized("localhost:5000/team/app:v1").unwrap();
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.path, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert!(r.image_id().starts_with("localhost:5000/team/app@sha256:"));
    }

    #[test]
    fn digests_and_tags() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_normalized(&format!("mysql:8.2@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.image_id(), format!("docker.io/library/mysql@{d}"));
        assert!(parse_normalized("mysql@sha256:abc").is_err());
        assert!(parse_normalized("mysql:-bad").is_err());
    }

    #[test]
    fn invalid_references() {
        assert_eq!(parse_normalized("Redis:7").unwrap_err(), UPPERCASE);
        assert_eq!(
            parse_normalized("calciumion/New-API:v1").unwrap_err(),
            UPPERCASE
        );
        assert_eq!(parse_normalized("").unwrap_err(), INVALID_FORMAT);
        assert_eq!(parse_normalized("redis::7").unwrap_err(), INVALID_FORMAT);
        assert_eq!(parse_normalized("re..dis").unwrap_err(), INVALID_FORMAT);
        assert_eq!(parse_normalized("redis/").unwrap_err(), INVALID_FORMAT);
        assert_eq!(parse_normalized("-redis").unwrap_err(), INVALID_FORMAT);
        assert!(
            parse_normalized(&"a".repeat(64))
                .unwrap_err()
                .contains("64-byte")
        );
        // Uppercase is fine in the registry host.
        assert!(parse_normalized("Registry.Example.com/app:1").is_ok());
        // Separators: '__' and runs of '-' are allowed, '..' is not.
        assert!(parse_normalized("my__app/x--y").is_ok());
        assert!(parse_normalized("my___app").is_err());
    }

    #[test]
    fn verdicts() {
        match check("Calciumion/new-api:latest") {
            ImageVerdict::Invalid { message } => assert_eq!(
                message,
                "Failed to apply default image tag \"Calciumion/new-api:latest\": couldn't parse image reference \"Calciumion/new-api:latest\": invalid reference format: repository name must be lowercase"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(""), ImageVerdict::Invalid { .. }));
        match check("does-not-exist/new-api:v1") {
            ImageVerdict::PullFails { message } => {
                assert!(message.contains("docker.io/does-not-exist/new-api:v1: not found"))
            }
            other => panic!("{other:?}"),
        }
        match check("registry.invalid/app:1") {
            ImageVerdict::PullFails { message } => {
                assert!(message.contains("lookup registry.invalid"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(check("calciumion/new-api:v0.9.0"), ImageVerdict::Pulls);
        assert_eq!(check("mysql:8.2"), ImageVerdict::Pulls);
    }

    #[test]
    fn the_tools_image_is_local() {
        use crate::kubelet::lifecycle::LocalImage;
        let mut config = crate::kubelet::config::ContainersConfig {
            image: "newapi-ops:0.1.0".into(),
            layout: None,
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            unavailable: None,
            api_server: "127.0.0.1:6443".into(),
        };
        for name in [
            "newapi-ops:0.1.0",
            "docker.io/library/newapi-ops:0.1.0",
            "localhost/newapi-ops:0.1.0",
            &format!("newapi-ops@sha256:{}", "a".repeat(64)),
        ] {
            assert_eq!(
                local(name, &config, None),
                LocalImage::Runnable {
                    image_id: format!("docker.io/library/newapi-ops@sha256:{}", "a".repeat(64))
                },
                "{name}"
            );
        }
        assert_eq!(local("busybox:1.36", &config, None), LocalImage::NotLocal);
        assert_eq!(
            local("team/newapi-ops:0.1.0", &config, None),
            LocalImage::NotLocal
        );
        match local("newapi-ops:9.9.9", &config, None) {
            LocalImage::Absent { message } => assert!(
                message.starts_with("Container image \"newapi-ops:9.9.9\" is not present with pull policy of Never: the sandbox has newapi-ops:0.1.0 only"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            local("newapi-ops", &config, None),
            LocalImage::Absent { .. }
        ));
        config.unavailable = Some("runc is not installed".into());
        match local("newapi-ops:0.1.0", &config, None) {
            LocalImage::Absent { message } => {
                assert!(
                    message.ends_with("real containers: runc is not installed"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fake_hex_is_stable_and_long() {
        let a = fake_hex(&["x", "y"]);
        assert_eq!(a.len(), 64);
        assert_eq!(a, fake_hex(&["x", "y"]));
        assert_ne!(a, fake_hex(&["x", "z"]));
    }
}
