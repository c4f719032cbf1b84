//! Backup files on disk: created 0600 in directories created 0700, compressed with zstd, sealed
//! with age when the backup is encrypted, hashed (SHA-256 of the bytes as stored) while written,
//! and synced before the backup is renamed into place.
//!
//! Compression and encryption run on a thread of their own per file, fed through a small bounded
//! channel, so that reading rows from MySQL and compressing them overlap while memory stays
//! bounded (at most two statement buffers in flight per file).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::error::{BackupError, Result};
use super::manifest::FileEntry;

/// Mode of every file a backup writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory a backup creates.
pub const DIR_MODE: u32 = 0o700;
/// zstd window of the files we write (2^19 = 512 KiB).
const WINDOW_LOG: u32 = 19;

/// Creates `dir` and any missing parents with mode 0700 (existing ones are left as they are).
pub fn create_dir_private(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| BackupError::file("creating directory", dir, e))
}

/// Creates a new file, mode 0600, failing if it exists.
pub fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| BackupError::file("creating", path, e))
}

/// Writes a whole small file (0600, synced) atomically: into `name.tmp`, then renamed.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = create_private(&tmp)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| BackupError::file("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| BackupError::file("renaming into place", &path, e))
}

/// Sets 0600 on a file we did not create ourselves (defence in depth).
pub fn ensure_private(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| BackupError::file("setting permissions of", path, e))
}

/// A file name for a table's files: letters, digits, `_` and `-` as they are, anything else as
/// `%XX`, so that any table name maps to one safe, distinct file name.
pub fn safe_name(table: &str) -> String {
    let mut out = String::with_capacity(table.len());
    for b in table.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How files are sealed: zstd at `level`, then age to `recipients` when there are any.
#[derive(Clone)]
pub struct Sealer {
    pub level: i32,
    pub recipients: Option<Arc<Vec<age::x25519::Recipient>>>,
}

impl Sealer {
    /// Parses the `--encrypt-to` values.
    pub fn new(level: i32, encrypt_to: &[String]) -> Result<Sealer> {
        let recipients = if encrypt_to.is_empty() {
            None
        } else {
            let mut out = Vec::new();
            for r in encrypt_to {
                out.push(age::x25519::Recipient::from_str(r.trim()).map_err(|e| {
                    BackupError::BadRecipient {
                        value: r.clone(),
                        detail: e.to_string(),
                    }
                })?);
            }
            Some(Arc::new(out))
        };
        Ok(Sealer { level, recipients })
    }

    /// The file name suffix: `.zst` or `.zst.age`.
    pub fn suffix(&self) -> &'static str {
        if self.recipients.is_some() {
            ".zst.age"
        } else {
            ".zst"
        }
    }
}

/// Counts and hashes what passes through to the file.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The hashed file, encrypted or not.
enum Sealed {
    Plain(Hashing<BufWriter<File>>),
    Age(age::stream::StreamWriter<Hashing<BufWriter<File>>>),
}

impl Write for Sealed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(buf),
            Sealed::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

impl Sealed {
    fn finish(self) -> io::Result<Hashing<BufWriter<File>>> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(w) => w.finish(),
        }
    }
}

/// A synchronous writer of one sealed file.
pub struct FileWriter {
    encoder: zstd::Encoder<'static, Sealed>,
    path: PathBuf,
    name: String,
}

impl FileWriter {
    /// Creates `dir/name` (0600, must not exist).
    pub fn create(dir: &Path, name: &str, sealer: &Sealer) -> Result<FileWriter> {
        let path = dir.join(name);
        let file = create_private(&path)?;
        let hashing = Hashing {
            inner: BufWriter::with_capacity(64 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let sealed = match &sealer.recipients {
            None => Sealed::Plain(hashing),
            Some(rs) => {
                let enc =
                    age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
                        .map_err(|e| BackupError::BadRecipient {
                            value: String::new(),
                            detail: e.to_string(),
                        })?;
                Sealed::Age(
                    enc.wrap_output(hashing)
                        .map_err(|e| BackupError::file("writing", &path, e))?,
                )
            }
        };
        let mut encoder = zstd::Encoder::new(sealed, sealer.level)
            .map_err(|e| BackupError::file("starting compression of", &path, e))?;
        // A 512 KiB window: memory stays small per file (the tool's peak RSS is bounded whatever
        // the table size) at a negligible cost in ratio for rows of a few hundred bytes.
        encoder
            .window_log(WINDOW_LOG)
            .map_err(|e| BackupError::file("starting compression of", &path, e))?;
        Ok(FileWriter {
            encoder,
            path,
            name: name.to_string(),
        })
    }

    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        self.encoder
            .write_all(buf)
            .map_err(|e| BackupError::file("writing", &self.path, e))
    }

    /// Ends the stream, syncs the file, and returns its manifest entry.
    pub fn finish(self) -> Result<FileEntry> {
        let path = self.path;
        let io = |e| BackupError::file("writing", &path, e);
        let sealed = self.encoder.finish().map_err(io)?;
        let mut hashing = sealed.finish().map_err(io)?;
        hashing.flush().map_err(io)?;
        let bytes = hashing.bytes;
        let sha256 = hex(&hashing.hasher.finalize());
        let file = hashing
            .inner
            .into_inner()
            .map_err(|e| BackupError::file("writing", &path, e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(FileEntry {
            name: self.name,
            bytes,
            sha256,
        })
    }
}

/// A [`FileWriter`] on a thread of its own, fed statement buffers through a bounded channel.
pub struct ChunkSink {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<Result<FileEntry>>>,
}

impl ChunkSink {
    pub fn create(dir: &Path, name: &str, sealer: &Sealer) -> Result<ChunkSink> {
        let mut writer = FileWriter::create(dir, name, sealer)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
        let thread = std::thread::Builder::new()
            .name("backup-writer".into())
            .spawn(move || {
                while let Some(buf) = rx.blocking_recv() {
                    writer.write_all(&buf)?;
                }
                writer.finish()
            })
            .map_err(|e| BackupError::file("starting a writer thread for", dir.join(name), e))?;
        Ok(ChunkSink {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a buffer; if the writer failed, returns its error.
    pub async fn write(&mut self, buf: Vec<u8>) -> Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(buf).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The thread stopped early: it failed. Its error says why.
            self.tx = None;
            match self.join().await {
                Err(e) => Err(e),
                Ok(_) => Err(BackupError::Usage("a backup writer stopped early".into())),
            }
        }
    }

    pub async fn finish(mut self) -> Result<FileEntry> {
        self.tx = None;
        self.join().await
    }

    async fn join(&mut self) -> Result<FileEntry> {
        let Some(thread) = self.thread.take() else {
            return Err(BackupError::Usage(
                "a backup writer was joined twice".into(),
            ));
        };
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(std::result::Result::ok)
            .unwrap_or_else(|| Err(BackupError::Usage("a backup writer thread panicked".into())))
    }
}

impl Drop for ChunkSink {
    fn drop(&mut self) {
        // Closing the channel ends the thread; it is not waited for (the backup is failing and
        // its directory is being removed).
        self.tx = None;
    }
}

/// The decryption keys of an encrypted backup.
pub struct Identities {
    pub file: PathBuf,
    pub keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl Identities {
    pub fn load(file: &Path) -> Result<Identities> {
        let bad = |detail: String| BackupError::BadIdentity {
            file: file.to_path_buf(),
            detail,
        };
        let f = age::IdentityFile::from_file(file.display().to_string())
            .map_err(|e| bad(e.to_string()))?;
        let keys = f.into_identities().map_err(|e| bad(e.to_string()))?;
        if keys.is_empty() {
            return Err(bad("no identities in it".into()));
        }
        Ok(Identities {
            file: file.to_path_buf(),
            keys,
        })
    }
}

/// Why a file could not be opened for reading.
pub enum OpenError {
    /// The identities do not match the file's recipients.
    WrongIdentity,
    /// Encrypted, and no identity given.
    NeedIdentity,
    Io(io::Error),
    /// Not a valid age/zstd file.
    Damaged(String),
}

/// Opens a sealed file for reading its plain content.
pub fn open_sealed(
    path: &Path,
    identities: Option<&Identities>,
) -> std::result::Result<Box<dyn BufRead + Send>, OpenError> {
    let file = File::open(path).map_err(OpenError::Io)?;
    let input = BufReader::with_capacity(64 * 1024, file);
    let plain: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "age") {
        let ids = identities.ok_or(OpenError::NeedIdentity)?;
        let dec = age::Decryptor::new_buffered(input)
            .map_err(|e| OpenError::Damaged(format!("not an age file: {e}")))?;
        match dec.decrypt(ids.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)) {
            Ok(r) => Box::new(r),
            Err(age::DecryptError::NoMatchingKeys) => return Err(OpenError::WrongIdentity),
            Err(e) => return Err(OpenError::Damaged(e.to_string())),
        }
    } else {
        Box::new(input)
    };
    let decoder = zstd::Decoder::new(plain).map_err(OpenError::Io)?;
    Ok(Box::new(BufReader::with_capacity(64 * 1024, decoder)))
}

/// SHA-256 and size of a file as stored.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_are_distinct_and_plain() {
        assert_eq!(safe_name("logs"), "logs");
        assert_eq!(safe_name("a/b.c"), "a%2Fb%2Ec");
        assert_ne!(safe_name("a.b"), safe_name("a_b"));
    }

    #[test]
    fn sealed_round_trip_with_and_without_age() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let id_path = dir.path().join("id.txt");
        {
            use age::secrecy::ExposeSecret as _;
            std::fs::write(&id_path, id.to_string().expose_secret()).unwrap();
        }
        for (name, to) in [("plain.zst", vec![]), ("sealed.zst.age", vec![recipient])] {
            let sealer = Sealer::new(3, &to).unwrap();
            let mut w = FileWriter::create(dir.path(), name, &sealer).unwrap();
            w.write_all(b"INSERT INTO t VALUES (1);\n").unwrap();
            let entry = w.finish().unwrap();
            let path = dir.path().join(name);
            assert_eq!(hash_file(&path).unwrap(), (entry.bytes, entry.sha256));
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let ids = Identities::load(&id_path).unwrap();
            let mut text = String::new();
            let Ok(mut r) = open_sealed(&path, Some(&ids)) else {
                panic!("open {name}")
            };
            r.read_to_string(&mut text).unwrap();
            assert_eq!(text, "INSERT INTO t VALUES (1);\n");
        }
        let other = dir.path().join("other.txt");
        {
            use age::secrecy::ExposeSecret as _;
            let k = age::x25519::Identity::generate().to_string();
            std::fs::write(&other, k.expose_secret()).unwrap();
        }
        let wrong = Identities::load(&other).unwrap();
        assert!(matches!(
            open_sealed(&dir.path().join("sealed.zst.age"), Some(&wrong)),
            Err(OpenError::WrongIdentity)
        ));
        assert!(matches!(
            open_sealed(&dir.path().join("sealed.zst.age"), None),
            Err(OpenError::NeedIdentity)
        ));
        assert!(Sealer::new(3, &["age1nope".into()]).is_err());
    }
}
