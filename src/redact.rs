//! Masking secrets in everything the tool writes: the printer passes all its output through a
//! [`Redactor`] (tables, notes, warnings, errors, and the string values of JSON and YAML
//! documents, so that they stay valid), and transcripts and incident files do the same.
//!
//! What is masked, as `***`:
//!
//! - **known values**: the secrets of the deployment, learned once a command has connected
//!   (every value of the namespace's Secrets, the passwords in New-API's SQL_DSN and
//!   REDIS_CONN_STRING, the values of its secret-named variables; see `crate::secrets`). A value
//!   is masked as a whole token only: where it is not part of a longer alphanumeric token, so
//!   the secret `123456` leaves `ticket 1234567` alone;
//! - **password-bearing patterns**, wherever they come from: `scheme://user:pass@`,
//!   `user:pass@tcp(…)` (Go's MySQL DSN), `KEY=value` and `KEY: "value"` for keys such as
//!   `password`, `SESSION_SECRET`, `api_key`, `token` (and `key: value` when the value looks
//!   like a secret, so that a note such as "the token: expired after rotation" stays readable),
//!   `IDENTIFIED BY '…'`, `--password=…`, the `-p…` of a mysql command line, bearer tokens.
//!
//! Never masked: the *name* of a Secret (`new-api-secret`), whatever its value or its words. A
//! key is a key when it stands alone or ends an environment-variable-like name (`DB_PASSWORD`),
//! not when it ends a Kubernetes name (`new-api-secret:`).
//!
//! A leaf: it knows nothing of Kubernetes. [`Shared`] is the handle the printer and a command
//! share, fed by the command once it has read the cluster.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use regex::{Captures, Regex};
use serde::ser::{
    Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};
use serde_json::Value as Json;

/// What a masked secret reads as.
pub const MASK: &str = "***";

/// Values shorter than this are not treated as secrets (they would mask ordinary words).
const MIN_SECRET_CHARS: usize = 4;
/// Values longer than this are learned line by line (a blob is never printed whole, and the
/// values must fit in one regular expression).
const MAX_SECRET_BYTES: usize = 4096;

/// Values that are never secrets, whatever says so: booleans, placeholders.
const NOT_SECRETS: &[&str] = &[
    "true", "false", "yes", "no", "null", "none", "nil", "set", "unset", "empty", "required",
    "missing", "invalid", "***",
];

fn regex(re: &str) -> Regex {
    Regex::new(re).unwrap_or_else(|e| unreachable!("static regex {re}: {e}"))
}

/// The password-bearing patterns, compiled once.
struct Patterns {
    url: Regex,
    dsn: Regex,
    assignment: Regex,
    identified_by: Regex,
    long_password: Regex,
    mysql_p: Regex,
    bearer: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        url: regex(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"),
        dsn: regex(r"([\w.-]+:)\S+?@((?:tcp|unix)\(|/)"),
        assignment: regex(
            r#"(^|[^\w.-])((?:[A-Za-z0-9]+_)*(?i:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|auth[_-]?token))("?)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&"'}\]=][^\s,;&"'}\]]*)"#,
        ),
        identified_by: regex(r"(?i)(identified\s+by\s+)('[^']*'|\S+)"),
        long_password: regex(r"(?i)(--password[= ])(\S+)"),
        mysql_p: regex(r"(?i)\b((?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?\s-p)([^\s-]\S*)"),
        bearer: regex(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]{12,}=*"),
    })
}

/// Whether an unquoted value after `key:` reads like a secret rather than a word of a sentence:
/// it has a digit, a capital after its first letter or a symbol, or is long.
fn looks_secret(v: &str) -> bool {
    let v = v.trim_end_matches(['.', ',', ')', ':']);
    if v.chars().count() < MIN_SECRET_CHARS || NOT_SECRETS.contains(&v.to_lowercase().as_str()) {
        return false;
    }
    v.chars().count() >= 16
        || v.chars().any(|c| c.is_ascii_digit())
        || v.chars().skip(1).any(char::is_uppercase)
        || v.chars().any(|c| !c.is_alphanumeric())
}

fn is_token_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Whether `prefix` ends with a colour code (`ESC [ 1 ; 31 m`): its `m` is no letter of a word.
fn ends_with_colour(prefix: &str) -> bool {
    let Some(esc) = prefix.rfind('\x1b') else {
        return false;
    };
    let code = &prefix[esc + 1..];
    code.strip_prefix('[')
        .and_then(|c| c.strip_suffix('m'))
        .is_some_and(|digits| digits.chars().all(|c| c.is_ascii_digit() || c == ';'))
}

/// Masks secrets: known values (as whole tokens) and password-bearing patterns.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Known secret values, longest first.
    values: Vec<String>,
    /// Names never masked (the namespace's Secrets).
    names: BTreeSet<String>,
    /// The values as one regular expression, built at first use after a change.
    matcher: OnceLock<Option<Regex>>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Treats `value` as a secret (unless it is too short, a boolean or a protected name).
    pub fn add(&mut self, value: &str) {
        let v = value.trim();
        if v.chars().count() < MIN_SECRET_CHARS
            || NOT_SECRETS.contains(&v.to_lowercase().as_str())
            || (v.len() < 6 && v.chars().all(|c| c.is_ascii_digit()))
            || self.names.contains(v)
        {
            return;
        }
        if v.len() <= MAX_SECRET_BYTES && !self.values.iter().any(|x| x == v) {
            self.values.push(v.to_string());
            // Longest first, so a secret containing another is masked whole.
            self.values
                .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
            self.matcher = OnceLock::new();
        }
        // A multi-line secret (a key, a certificate) may be printed a line at a time.
        if v.contains('\n') {
            for line in v.lines().map(str::trim) {
                if line.len() >= 16 && line.len() <= MAX_SECRET_BYTES && line.len() < v.len() {
                    self.add(line);
                }
            }
        }
    }

    /// Never masks `name` (a Secret's name), and forgets it as a value.
    pub fn protect(&mut self, name: &str) {
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        self.names.insert(name.to_string());
        let before = self.values.len();
        self.values.retain(|v| v != name);
        if self.values.len() != before {
            self.matcher = OnceLock::new();
        }
    }

    /// How many values are known.
    pub fn known(&self) -> usize {
        self.values.len()
    }

    fn matcher(&self) -> Option<&Regex> {
        self.matcher
            .get_or_init(|| {
                if self.values.is_empty() {
                    return None;
                }
                let alternation: Vec<String> =
                    self.values.iter().map(|v| regex::escape(v)).collect();
                regex::RegexBuilder::new(&alternation.join("|"))
                    .size_limit(1 << 28)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// Where the protected names are in `s`.
    fn protected_ranges(&self, s: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for name in &self.names {
            for (i, _) in s.match_indices(name.as_str()) {
                out.push((i, i + name.len()));
            }
        }
        out
    }

    /// Masks every secret in `s`.
    pub fn text(&self, s: &str) -> String {
        if s.is_empty() {
            return String::new();
        }
        let protected = self.protected_ranges(s);
        let overlaps_name =
            |start: usize, end: usize| protected.iter().any(|&(a, b)| start < b && a < end);
        let mut out = match self.matcher() {
            Some(m) => m
                .replace_all(s, |c: &Captures<'_>| {
                    let Some(whole) = c.get(0) else {
                        return String::new();
                    };
                    let v = whole.as_str();
                    let before = s[..whole.start()].chars().next_back();
                    let after = s[whole.end()..].chars().next();
                    let glued_before = v.chars().next().is_some_and(is_token_char)
                        && before.is_some_and(is_token_char)
                        && !ends_with_colour(&s[..whole.start()]);
                    let glued_after = v.chars().next_back().is_some_and(is_token_char)
                        && after.is_some_and(is_token_char);
                    if glued_before || glued_after || overlaps_name(whole.start(), whole.end()) {
                        v.to_string()
                    } else {
                        MASK.to_string()
                    }
                })
                .into_owned(),
            None => s.to_string(),
        };
        let p = patterns();
        out = p.url.replace_all(&out, "${1}***@").into_owned();
        out = p.dsn.replace_all(&out, "${1}***@${2}").into_owned();
        out = p
            .assignment
            .replace_all(&out, |c: &Captures<'_>| self.assignment(c))
            .into_owned();
        out = p.identified_by.replace_all(&out, "${1}'***'").into_owned();
        out = p.long_password.replace_all(&out, "${1}***").into_owned();
        out = p.mysql_p.replace_all(&out, "${1}***").into_owned();
        out = p.bearer.replace_all(&out, "${1}***").into_owned();
        out
    }

    /// One `key = value` / `key: value` match of the assignment pattern, masked or not.
    fn assignment(&self, c: &Captures<'_>) -> String {
        let part = |i: usize| c.get(i).map_or("", |m| m.as_str());
        let (pre, key, quote, sep, value) = (part(1), part(2), part(3), part(4), part(5));
        let quoted = value.starts_with('"') || value.starts_with('\'');
        let bare = value.trim_matches(['"', '\'']);
        let keep = bare == MASK
            || bare.is_empty()
            || self.names.contains(bare)
            || (!quoted && !sep.contains('=') && !looks_secret(bare))
            || (!quoted && NOT_SECRETS.contains(&bare.to_lowercase().as_str()));
        if keep {
            return part(0).to_string();
        }
        let masked = if quoted {
            let q = &value[..1];
            format!("{q}{MASK}{q}")
        } else {
            MASK.to_string()
        };
        format!("{pre}{key}{quote}{sep}{masked}")
    }

    /// Masks every string (and map key) of a JSON value.
    pub fn json(&self, v: &Json) -> Json {
        match v {
            Json::String(s) => Json::String(self.text(s)),
            Json::Array(a) => Json::Array(a.iter().map(|x| self.json(x)).collect()),
            Json::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, x)| (self.text(k), self.json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// The redactor a printer and a command share: the command teaches it the deployment's secrets
/// once it has read them, the printer masks with it. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<RwLock<Redactor>>);

impl Shared {
    pub fn new() -> Shared {
        Shared::default()
    }

    /// Learns secret values and names never to mask.
    pub fn learn<'a>(
        &self,
        values: impl IntoIterator<Item = &'a str>,
        names: impl IntoIterator<Item = &'a str>,
    ) {
        let mut r = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for n in names {
            r.protect(n);
        }
        for v in values {
            r.add(v);
        }
    }

    /// The redactor as it is now.
    pub fn read(&self) -> RwLockReadGuard<'_, Redactor> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the redactor as it is now (for a transcript or an incident).
    pub fn snapshot(&self) -> Redactor {
        self.read().clone()
    }

    /// Masks every secret in `s`.
    pub fn text(&self, s: &str) -> String {
        self.read().text(s)
    }
}

/// `value`, serialized with every string (and map key) masked: a JSON or YAML document of it
/// stays valid, whatever its strings held.
pub struct Redacted<'a, T: ?Sized> {
    value: &'a T,
    redactor: &'a Redactor,
}

impl<'a, T: ?Sized> Redacted<'a, T> {
    pub fn new(value: &'a T, redactor: &'a Redactor) -> Redacted<'a, T> {
        Redacted { value, redactor }
    }
}

impl<T: Serialize + ?Sized> Serialize for Redacted<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Masking {
            inner: s,
            r: self.redactor,
        })
    }
}

/// A serializer that masks strings on their way to `inner`.
struct Masking<'a, S> {
    inner: S,
    r: &'a Redactor,
}

/// A compound (sequence, map, struct, ...) whose elements are masked on their way.
struct Each<'a, C> {
    inner: C,
    r: &'a Redactor,
}

macro_rules! forward {
    ($($name:ident($ty:ty)),* $(,)?) => {
        $(fn $name(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$name(v)
        })*
    };
}

/// The serializer's methods that start a compound: the compound is wrapped.
macro_rules! compound {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $assoc:ident),* $(,)?) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<Self::$assoc, S::Error> {
            Ok(Each {
                inner: self.inner.$name($($arg),*)?,
                r: self.r,
            })
        })*
    };
}

impl<'a, S: Serializer> Serializer for Masking<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Each<'a, S::SerializeSeq>;
    type SerializeTuple = Each<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Each<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Each<'a, S::SerializeTupleVariant>;
    type SerializeMap = Each<'a, S::SerializeMap>;
    type SerializeStruct = Each<'a, S::SerializeStruct>;
    type SerializeStructVariant = Each<'a, S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
    );

    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_str(&self.r.text(v))
    }

    fn collect_str<T: ?Sized + std::fmt::Display>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_str(&self.r.text(&v.to_string()))
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_some(&Redacted::new(v, self.r))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_struct(name, &Redacted::new(v, self.r))
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_variant(name, index, variant, &Redacted::new(v, self.r))
    }

    compound!(
        serialize_seq(len: Option<usize>) -> SerializeSeq,
        serialize_tuple(len: usize) -> SerializeTuple,
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct,
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> SerializeTupleVariant,
        serialize_map(len: Option<usize>) -> SerializeMap,
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct,
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> SerializeStructVariant,
    );

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A compound whose elements have no key: each is masked on its way.
macro_rules! elements {
    ($($trait:ident::$method:ident),* $(,)?) => {
        $(impl<C: $trait> $trait for Each<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $method<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), C::Error> {
                let r = self.r;
                self.inner.$method(&Redacted::new(v, r))
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// A struct's fields: the names are the program's, the values are masked.
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl<C: $trait> $trait for Each<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), C::Error> {
                let r = self.r;
                self.inner.serialize_field(key, &Redacted::new(v, r))
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.inner.skip_field(key)
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

impl<C: SerializeMap> SerializeMap for Each<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> Result<(), C::Error> {
        let r = self.r;
        self.inner.serialize_key(&Redacted::new(k, r))
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), C::Error> {
        let r = self.r;
        self.inner.serialize_value(&Redacted::new(v, r))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(values: &[&str], names: &[&str]) -> Redactor {
        let mut r = Redactor::new();
        for n in names {
            r.protect(n);
        }
        for v in values {
            r.add(v);
        }
        r
    }

    #[test]
    fn known_values_and_patterns_are_masked() {
        let r = with(&["123456", "abc"], &[]);
        let t = r.text("dsn root:123456@tcp(mysql:3306)/new-api and redis://:s3cr3t@redis:6379 password=hunter2 abc");
        assert!(
            !t.contains("123456") && !t.contains("s3cr3t") && !t.contains("hunter2"),
            "{t}"
        );
        assert!(
            t.contains("abc") && t.contains("root:***@tcp(mysql:3306)"),
            "{t}"
        );
        let j = r.json(&json!({"a": ["x 123456"], "123456": 1}));
        assert!(!j.to_string().contains("123456"), "{j}");
        assert_eq!(
            r.text("kubectl logs --previous -p"),
            "kubectl logs --previous -p"
        );
    }

    #[test]
    fn password_bearing_patterns_wherever_they_come_from() {
        let r = Redactor::new();
        for (input, want) in [
            (
                "[FATAL] failed to connect: root:Sup3r-S3cret@tcp(mysql:3306)/new-api",
                "[FATAL] failed to connect: root:***@tcp(mysql:3306)/new-api",
            ),
            (
                "dsn p@ss: user:p@ss:w0rd@tcp(db:3306)/x",
                "dsn p@ss: user:***@tcp(db:3306)/x",
            ),
            (
                "redis://default:hunter2@redis:6379/0",
                "redis://default:***@redis:6379/0",
            ),
            ("mysql://u:pw@db/new-api", "mysql://u:***@db/new-api"),
            ("password=hunter2 next", "password=*** next"),
            ("SESSION_SECRET=abcdef", "SESSION_SECRET=***"),
            ("MYSQL_ROOT_PASSWORD: \"x\"", "MYSQL_ROOT_PASSWORD: \"***\""),
            (
                r#"{"password": "pw", "user": "u"}"#,
                r#"{"password": "***", "user": "u"}"#,
            ),
            ("token: eyJhbGciOiJIUzI1", "token: ***"),
            (
                "CREATE USER x IDENTIFIED BY 'pw'",
                "CREATE USER x IDENTIFIED BY '***'",
            ),
            ("mysqldump --password=pw db", "mysqldump --password=*** db"),
            (
                "mysql -h db -u root -pS3cret db",
                "mysql -h db -u root -p*** db",
            ),
            (
                "Authorization: Bearer abcdefghijklmnop",
                "Authorization: Bearer ***",
            ),
        ] {
            assert_eq!(r.text(input), want, "{input}");
        }
    }

    #[test]
    fn over_redaction_of_issue_12_is_gone() {
        // The word after a Secret's name is not a secret.
        let r = with(&["123456"], &["new-api-secret"]);
        assert_eq!(
            r.text("Secret new-api-secret: on the list of the namespace"),
            "Secret new-api-secret: on the list of the namespace"
        );
        // Values are whole tokens: not inside numbers and words.
        assert_eq!(r.text("ticket 1234567"), "ticket 1234567");
        assert_eq!(r.text("ticket 123456"), "ticket ***");
        assert_eq!(r.text("ps -pid 42"), "ps -pid 42");
        let r = with(&["idle"], &[]);
        assert_eq!(r.text("-pid, idle, idler"), "-pid, ***, idler");
        // A colour code is not part of a word.
        assert_eq!(r.text("\x1b[31midle\x1b[0m"), "\x1b[31m***\x1b[0m");
        // An operator's note stays readable.
        let r = Redactor::new();
        for note in [
            "the token: expired after rotation, password: see the vault",
            "Access denied for user 'root'@'10.0.0.5' (using password: YES)",
            "secretRef: new-api-secret",
            "the password is weak",
            "when: password == 'x'",
        ] {
            assert_eq!(r.text(note), note);
        }
    }

    #[test]
    fn a_secrets_name_is_never_masked() {
        // Even when a value is a word of the name, or the name itself.
        let r = with(
            &["new-api", "new-api-secret", "s3cr3t-value"],
            &["new-api-secret"],
        );
        assert_eq!(
            r.text("secret: new-api-secret holds s3cr3t-value"),
            "secret: new-api-secret holds ***"
        );
        assert_eq!(r.text("new-api"), "***");
        assert_eq!(r.known(), 2);
    }

    #[test]
    fn values_are_kept_compact() {
        let r = with(
            &[
                "true",
                "3306",
                "abc",
                "  spaced-secret  ",
                "123456",
                "123456",
            ],
            &[],
        );
        assert_eq!(r.known(), 2);
        let r = with(
            &["-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"],
            &[],
        );
        assert_eq!(r.text("line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "line ***");
        // A blob is not a value (it would not fit the matcher); many values still do.
        let mut r = with(&[&"x".repeat(100_000)], &[]);
        assert_eq!(r.known(), 0);
        for i in 0..500 {
            r.add(&format!("secret-value-{i:04}-{}", "y".repeat(200)));
        }
        let probe = format!("a secret-value-0499-{} b", "y".repeat(200));
        assert_eq!(r.text(&probe), "a *** b");
    }

    #[test]
    fn documents_stay_valid_and_keep_their_order() {
        #[derive(serde::Serialize)]
        struct Doc {
            schema_version: u32,
            dsn: String,
            list: Vec<String>,
            map: std::collections::BTreeMap<String, Option<String>>,
            nested: Json,
        }
        let r = with(&["s3cr3t-value"], &[]);
        let doc = Doc {
            schema_version: 1,
            dsn: "root:pw@tcp(mysql:3306)/x".into(),
            list: vec!["has s3cr3t-value inside".into()],
            map: [("s3cr3t-value".to_string(), Some("password=x1".to_string()))]
                .into_iter()
                .collect(),
            nested: json!({"line": "SESSION_SECRET=s3cr3t-value"}),
        };
        let text = serde_json::to_string(&Redacted::new(&doc, &r)).unwrap();
        assert!(!text.contains("s3cr3t") && !text.contains("pw@"), "{text}");
        assert!(text.starts_with("{\"schema_version\":1,\"dsn\""), "{text}");
        let v: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(v["nested"]["line"], "SESSION_SECRET=***");
        let yaml = serde_saphyr::to_string(&Redacted::new(&doc, &r)).unwrap();
        assert!(!yaml.contains("s3cr3t"), "{yaml}");
        let back: Json = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back["list"][0], "has *** inside");
        assert_eq!(back["dsn"], "root:***@tcp(mysql:3306)/x");
    }

    #[test]
    fn shared_handles_learn_together() {
        let a = Shared::new();
        let b = a.clone();
        a.learn(["s3cr3t-value"], ["my-secret"]);
        assert_eq!(b.text("x s3cr3t-value my-secret"), "x *** my-secret");
        assert_eq!(b.snapshot().known(), 1);
    }
}
