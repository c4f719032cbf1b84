//! Where runbooks come from: the built-ins (`runbooks/*.yaml`, compiled into the binary), then
//! the user's directories (`--runbook-dir DIR`, `NEWAPI_OPS_RUNBOOK_DIRS`, and
//! `<config dir>/newapi-ops/runbooks/` when it exists). A user runbook with a built-in's name
//! replaces it.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::diag::Diagnostic;
use super::model::{self, MAX_FILE_BYTES, Runbook};

/// The built-in runbooks: (path in the repository, text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "runbooks/pod-startup-failure.yaml",
        include_str!("../../runbooks/pod-startup-failure.yaml"),
    ),
    (
        "runbooks/resource-shortage.yaml",
        include_str!("../../runbooks/resource-shortage.yaml"),
    ),
    (
        "runbooks/db-connection.yaml",
        include_str!("../../runbooks/db-connection.yaml"),
    ),
    (
        "runbooks/high-cpu.yaml",
        include_str!("../../runbooks/high-cpu.yaml"),
    ),
    (
        "runbooks/high-memory.yaml",
        include_str!("../../runbooks/high-memory.yaml"),
    ),
    (
        "runbooks/slow-response.yaml",
        include_str!("../../runbooks/slow-response.yaml"),
    ),
    (
        "runbooks/oomkilled.yaml",
        include_str!("../../runbooks/oomkilled.yaml"),
    ),
    (
        "runbooks/scale-out.yaml",
        include_str!("../../runbooks/scale-out.yaml"),
    ),
    (
        "runbooks/backup.yaml",
        include_str!("../../runbooks/backup.yaml"),
    ),
    (
        "runbooks/production-readiness.yaml",
        include_str!("../../runbooks/production-readiness.yaml"),
    ),
];

/// Every runbook found, and the files that did not load.
#[derive(Debug, Default)]
pub struct Library {
    pub runbooks: Vec<Runbook>,
    pub problems: Vec<Diagnostic>,
}

impl Library {
    pub fn get(&self, name: &str) -> Option<&Runbook> {
        self.runbooks.iter().find(|r| r.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.runbooks.iter().map(|r| r.name.as_str()).collect()
    }
}

/// Reads a file, at most one byte more than a runbook may have.
pub fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(u64::try_from(MAX_FILE_BYTES).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Loads one file.
pub fn load_file(path: &Path) -> Result<Runbook, Vec<Diagnostic>> {
    let shown = path.display().to_string();
    match read_capped(path) {
        // Read only up to the limit: say the file's real size, not the bytes read.
        Ok(bytes) if bytes.len() > MAX_FILE_BYTES => Err(vec![Diagnostic {
            file: shown.clone(),
            line: 1,
            column: 1,
            message: format!(
                "the file is {} bytes; a runbook may be at most {} KiB",
                std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len()),
                MAX_FILE_BYTES / 1024
            ),
            help: Some("split it into smaller runbooks".into()),
        }]),
        Ok(bytes) => model::load(&shown, &bytes, &shown),
        Err(e) => Err(vec![Diagnostic {
            file: shown,
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e}"),
            help: None,
        }]),
    }
}

/// The user's runbook directories for a command: its `--runbook-dir` flags (and environment),
/// then `runbook_dirs` of the config file, then the default directory.
pub fn dirs_for(flags: &[PathBuf], settings: &crate::config::Settings) -> Vec<PathBuf> {
    let given: Vec<PathBuf> = flags
        .iter()
        .chain(&settings.runbook_dirs)
        .cloned()
        .collect();
    user_dirs(&given)
}

/// The user's runbook directories: the given ones (flag and environment, then the config
/// file's `runbook_dirs`), then the default one if it exists; each once.
pub fn user_dirs(given: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for d in given {
        if !dirs.contains(d) {
            dirs.push(d.clone());
        }
    }
    if let Some(d) = dirs::config_dir().map(|c| c.join("newapi-ops").join("runbooks"))
        && d.is_dir()
        && !dirs.contains(&d)
    {
        dirs.push(d);
    }
    dirs
}

/// The built-ins and every `*.yaml`/`*.yml` in `dirs` (sorted by name).
pub fn load(dirs: &[PathBuf]) -> Library {
    let mut lib = Library::default();
    for (path, text) in BUILTIN {
        match model::load(path, text.as_bytes(), &format!("built-in ({path})")) {
            Ok(rb) => lib.runbooks.push(rb),
            Err(mut ds) => lib.problems.append(&mut ds),
        }
    }
    for dir in dirs {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect(),
            Err(e) => {
                lib.problems.push(Diagnostic {
                    file: dir.display().to_string(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read the runbook directory: {e}"),
                    help: None,
                });
                continue;
            }
        };
        files.sort();
        for f in files {
            match load_file(&f) {
                Ok(rb) => {
                    lib.runbooks
                        .retain(|r| r.name != rb.name || !r.source.starts_with("built-in"));
                    if let Some(first) = lib.runbooks.iter().find(|r| r.name == rb.name) {
                        lib.problems.push(Diagnostic {
                            file: f.display().to_string(),
                            line: 1,
                            column: 1,
                            message: format!(
                                "runbook `{}` is also defined in {}; the first one is used",
                                rb.name, first.source
                            ),
                            help: None,
                        });
                        continue;
                    }
                    lib.runbooks.push(rb);
                }
                Err(mut ds) => lib.problems.append(&mut ds),
            }
        }
    }
    lib.runbooks.sort_by(|a, b| a.name.cmp(&b.name));
    lib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_validates_and_every_signature_runbook_exists() {
        let lib = load(&[]);
        assert!(lib.problems.is_empty(), "{:#?}", lib.problems);
        assert_eq!(lib.runbooks.len(), BUILTIN.len());
        for name in crate::diagnose::signatures::RUNBOOKS {
            assert!(lib.get(name).is_some(), "no built-in runbook {name}");
        }
        for rb in &lib.runbooks {
            assert!(!rb.symptoms.is_empty(), "{}", rb.name);
        }
    }
}
