//! A real container's volumes, set up as a kubelet sets them up:
//!
//! - `persistentVolumeClaim`: the bound PersistentVolume's `hostPath` (or `local`) directory, as a
//!   provisioner's volume would be: created if missing, and handed to the pod's `fsGroup`
//!   (group-owned, group-writable, setgid) when its top directory is not that group's yet;
//! - `hostPath`: the path itself (`DirectoryOrCreate` creates it);
//! - `secret` and `configMap`: their keys (or `items`) written as files into a directory of the
//!   container's bundle — owned by the container's user (group: `fsGroup` if set), with the
//!   volume's modes minus every bit for others, in a directory no one else may enter; mounted
//!   read-only;
//! - `emptyDir`: a directory of the pod's, shared by its containers (0777, as a kubelet makes it).
//!
//! Other volume types fail the container with a message naming them.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::Client;
use kube::api::Api;

use super::spec::{CreateError, Mount, Sources};

/// Where a pod's volumes live: `pod_dir` for emptyDirs (kept while the pod exists), `bundle` for
/// the Secret and ConfigMap files of one container (removed with it).
pub struct VolumeDirs<'a> {
    pub pod_dir: &'a Path,
    pub bundle: &'a Path,
}

/// The owner given to files a container must read.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub fs_group: Option<u32>,
}

/// Reads every Secret and ConfigMap the container's environment and the pod's volumes name.
pub async fn fetch_sources(
    client: &Client,
    pod: &Pod,
    container: &k8s_openapi::api::core::v1::Container,
) -> Result<Sources, CreateError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut secrets: Vec<String> = Vec::new();
    let mut maps: Vec<String> = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
        if let Some(r) = &from.config_map_ref {
            maps.push(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(from) = &var.value_from {
            if let Some(r) = &from.secret_key_ref {
                secrets.push(r.name.clone());
            }
            if let Some(r) = &from.config_map_key_ref {
                maps.push(r.name.clone());
            }
        }
    }
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
        if let Some(c) = &v.config_map {
            maps.push(c.name.clone());
        }
    }
    secrets.sort();
    secrets.dedup();
    maps.sort();
    maps.dedup();
    let mut out = Sources::default();
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in secrets {
        match secret_api.get_opt(&name).await {
            Ok(Some(s)) => {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                out.secrets.insert(name, data);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(CreateError::create(format!(
                    "reading secret \"{name}\": {e}"
                )));
            }
        }
    }
    let map_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in maps {
        match map_api.get_opt(&name).await {
            Ok(Some(c)) => {
                let mut data: BTreeMap<String, String> = c.data.unwrap_or_default();
                for (k, v) in c.binary_data.unwrap_or_default() {
                    data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                out.config_maps.insert(name, data);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(CreateError::create(format!(
                    "reading configmap \"{name}\": {e}"
                )));
            }
        }
    }
    Ok(out)
}

/// Sets up the volumes the container mounts and returns the bind mounts.
pub async fn mounts(
    client: &Client,
    pod: &Pod,
    container: &k8s_openapi::api::core::v1::Container,
    sources: &Sources,
    dirs: &VolumeDirs<'_>,
    owner: Owner,
) -> Result<Vec<Mount>, CreateError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let volumes: Vec<&Volume> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .collect();
    let mut out = Vec::new();
    let mut ready: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    for vm in container.volume_mounts.iter().flatten() {
        if !ready.contains_key(&vm.name) {
            let v = volumes.iter().find(|v| v.name == vm.name).ok_or_else(|| {
                CreateError::create(format!(
                    "volume \"{}\" of the mount at {} is not in the pod's volumes",
                    vm.name, vm.mount_path
                ))
            })?;
            let prepared = prepare(client, ns, v, sources, dirs, owner).await?;
            ready.insert(vm.name.clone(), prepared);
        }
        let (path, forced_ro) = &ready[&vm.name];
        let mut source = path.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let rel = Path::new(sub);
            if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
                return Err(CreateError::create(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                )));
            }
            source = source.join(rel);
            if !source.exists() {
                std::fs::create_dir_all(&source).map_err(|e| {
                    CreateError::create(format!("creating subPath {}: {e}", source.display()))
                })?;
            }
        }
        out.push(Mount {
            source: source.display().to_string(),
            destination: vm.mount_path.clone(),
            readonly: *forced_ro || vm.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// One volume on the host: its directory, and whether it is always read-only.
async fn prepare(
    client: &Client,
    ns: &str,
    v: &Volume,
    sources: &Sources,
    dirs: &VolumeDirs<'_>,
    owner: Owner,
) -> Result<(PathBuf, bool), CreateError> {
    let mount_err = |detail: String| {
        CreateError::create(format!(
            "MountVolume.SetUp failed for volume \"{}\" : {detail}",
            v.name
        ))
    };
    if let Some(claim) = &v.persistent_volume_claim {
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .get_opt(&claim.claim_name)
            .await
            .map_err(|e| mount_err(e.to_string()))?
            .ok_or_else(|| {
                mount_err(format!(
                    "persistentvolumeclaim \"{}\" not found",
                    claim.claim_name
                ))
            })?;
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                mount_err(format!(
                    "persistentvolumeclaim \"{}\" is not bound",
                    claim.claim_name
                ))
            })?;
        let pv = Api::<PersistentVolume>::all(client.clone())
            .get_opt(&pv_name)
            .await
            .map_err(|e| mount_err(e.to_string()))?
            .ok_or_else(|| mount_err(format!("persistentvolume \"{pv_name}\" not found")))?;
        let spec = pv.spec.unwrap_or_default();
        let path = spec
            .host_path
            .map(|h| h.path)
            .or(spec.local.map(|l| l.path))
            .ok_or_else(|| {
                mount_err(format!(
                    "persistentvolume \"{pv_name}\" is neither hostPath nor local (the sandbox mounts only those)"
                ))
            })?;
        let path = PathBuf::from(path);
        std::fs::create_dir_all(&path)
            .map_err(|e| mount_err(format!("creating {}: {e}", path.display())))?;
        if let Some(g) = owner.fs_group {
            give_to_group(&path, g).map_err(|e| mount_err(format!("applying fsGroup {g}: {e}")))?;
        }
        return Ok((path, claim.read_only.unwrap_or(false)));
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => std::fs::create_dir_all(&path)
                .map_err(|e| mount_err(format!("creating {}: {e}", path.display())))?,
            "Directory" if !path.is_dir() => {
                return Err(mount_err(format!(
                    "hostPath type check failed: {} is not a directory",
                    path.display()
                )));
            }
            "File" if !path.is_file() => {
                return Err(mount_err(format!(
                    "hostPath type check failed: {} is not a file",
                    path.display()
                )));
            }
            _ => {}
        }
        return Ok((path, false));
    }
    if v.empty_dir.is_some() {
        let path = dirs.pod_dir.join("empty-dir").join(&v.name);
        if !path.is_dir() {
            std::fs::create_dir_all(&path)
                .map_err(|e| mount_err(format!("creating {}: {e}", path.display())))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| mount_err(e.to_string()))?;
        }
        return Ok((path, false));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let files = match sources.secrets.get(&name) {
            Some(data) => select(data, s.items.as_deref(), "Secret", &name).map_err(mount_err)?,
            None if s.optional.unwrap_or(false) => Vec::new(),
            None => return Err(mount_err(format!("secret \"{name}\" not found"))),
        };
        let dir = dirs.bundle.join("volumes").join(&v.name);
        write_files(&dir, &files, s.default_mode, owner).map_err(|e| mount_err(e.to_string()))?;
        return Ok((dir, true));
    }
    if let Some(c) = &v.config_map {
        let name = c.name.clone();
        let files = match sources.config_maps.get(&name) {
            Some(data) => {
                let bytes: BTreeMap<String, Vec<u8>> = data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect();
                select(&bytes, c.items.as_deref(), "ConfigMap", &name).map_err(mount_err)?
            }
            None if c.optional.unwrap_or(false) => Vec::new(),
            None => return Err(mount_err(format!("configmap \"{name}\" not found"))),
        };
        let dir = dirs.bundle.join("volumes").join(&v.name);
        write_files(&dir, &files, c.default_mode, owner).map_err(|e| mount_err(e.to_string()))?;
        return Ok((dir, true));
    }
    let kind = serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".into());
    Err(mount_err(format!(
        "volumes of type {kind} are not supported by the sandbox (persistentVolumeClaim, hostPath, emptyDir, secret and configMap are)"
    )))
}

/// A file of a Secret or ConfigMap volume: its relative path, content and mode.
type File = (String, Vec<u8>, Option<i32>);

/// The files of a Secret/ConfigMap volume: every key, or the `items`.
fn select(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    kind: &str,
    name: &str,
) -> Result<Vec<File>, String> {
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), None))
            .collect()),
        Some(items) => items
            .iter()
            .map(|i| {
                let v = data.get(&i.key).ok_or_else(|| {
                    format!("configured key {} not found in {kind} {name}", i.key)
                })?;
                Ok((i.path.clone(), v.clone(), i.mode))
            })
            .collect(),
    }
}

/// Writes the files (a fresh directory; modes are the volume's without the bits for others, the
/// owner is the container's user, the group `fsGroup` when set).
fn write_files(
    dir: &Path,
    files: &[File],
    default_mode: Option<i32>,
    owner: Owner,
) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_dir_all(dir);
    let group = owner.fs_group.unwrap_or(owner.gid);
    let dir_mode = if owner.fs_group.is_some() {
        0o750
    } else {
        0o700
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for (rel, content, mode) in files {
        let rel_path = Path::new(rel);
        if rel_path.is_absolute() || rel_path.components().any(|c| c == Component::ParentDir) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("path {rel:?} must be relative without '..'"),
            ));
        }
        let path = dir.join(rel_path);
        if let Some(parent) = path.parent()
            && parent != dir
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(parent)?;
            std::os::unix::fs::chown(parent, Some(owner.uid), Some(group))?;
        }
        let mode = u32::try_from(mode.or(default_mode).unwrap_or(0o644)).unwrap_or(0o644) & 0o770;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(content)?;
        std::os::unix::fs::chown(&path, Some(owner.uid), Some(group))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    std::os::unix::fs::chown(dir, Some(owner.uid), Some(group))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))
}

/// `fsGroup` on a volume, like the kubelet's `OnRootMismatch`: when the top directory is not
/// the group's yet, everything in it becomes the group's, group-writable, directories setgid.
fn give_to_group(path: &Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    if meta.gid() == gid && meta.mode() & 0o2070 == 0o2070 {
        return Ok(());
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p)?;
        if m.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::chown(&p, None, Some(gid))?;
        let extra = if m.is_dir() { 0o2070 } else { 0o060 };
        std::fs::set_permissions(
            &p,
            std::fs::Permissions::from_mode((m.mode() & 0o7777) | extra),
        )?;
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn secret_files_are_private_to_the_container_user() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("sa");
        let owner = Owner {
            uid: 65532,
            gid: 65532,
            fs_group: None,
        };
        let data: BTreeMap<String, Vec<u8>> = [
            ("token".to_string(), b"t0k3n".to_vec()),
            ("ca.crt".into(), b"PEM".to_vec()),
        ]
        .into();
        let files = select(&data, None, "Secret", "sa").unwrap();
        write_files(&vol, &files, Some(0o644), owner).unwrap();
        let m = std::fs::metadata(vol.join("token")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640, "0644 without the bits for others");
        assert_eq!((m.uid(), m.gid()), (65532, 65532));
        assert_eq!(std::fs::read(vol.join("token")).unwrap(), b"t0k3n");
        assert_eq!(std::fs::metadata(&vol).unwrap().mode() & 0o777, 0o700);

        let items = vec![KeyToPath {
            key: "token".into(),
            path: "sub/t".into(),
            mode: Some(0o400),
            ..KeyToPath::default()
        }];
        let files = select(&data, Some(&items), "Secret", "sa").unwrap();
        write_files(
            &vol,
            &files,
            None,
            Owner {
                fs_group: Some(2000),
                ..owner
            },
        )
        .unwrap();
        assert!(!vol.join("token").exists(), "rewritten from scratch");
        let m = std::fs::metadata(vol.join("sub/t")).unwrap();
        assert_eq!((m.mode() & 0o777, m.gid()), (0o400, 2000));
        assert_eq!(std::fs::metadata(&vol).unwrap().mode() & 0o777, 0o750);
        let missing = vec![KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            ..KeyToPath::default()
        }];
        assert_eq!(
            select(&data, Some(&missing), "Secret", "sa").unwrap_err(),
            "configured key nope not found in Secret sa"
        );
        let bad = vec![(String::from("../escape"), vec![], None)];
        assert!(write_files(&vol, &bad, None, owner).is_err());
    }

    #[test]
    fn fs_group_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("pv");
        std::fs::create_dir_all(v.join("a")).unwrap();
        std::fs::write(v.join("a/f"), "x").unwrap();
        give_to_group(&v, 4242).unwrap();
        let m = std::fs::metadata(v.join("a/f")).unwrap();
        assert_eq!(m.gid(), 4242);
        assert_eq!(m.mode() & 0o060, 0o060);
        assert_eq!(std::fs::metadata(&v).unwrap().mode() & 0o2070, 0o2070);
        // The top directory is the group's: nothing is walked again (a new file gets the group
        // from the setgid directory, but not group write).
        std::fs::write(v.join("new"), "y").unwrap();
        std::fs::set_permissions(v.join("new"), std::fs::Permissions::from_mode(0o644)).unwrap();
        give_to_group(&v, 4242).unwrap();
        assert_eq!(std::fs::metadata(v.join("new")).unwrap().mode() & 0o020, 0);
    }
}
