//! SQL text: quoting identifiers, writing values as literals the server reads back to the same
//! bytes, and splitting `SHOW CREATE TABLE` into the table (with its primary key) and the
//! secondary indexes and foreign keys that a restore adds after the data.

use mysql_async::consts::ColumnType;

/// The id of the `binary` character set in result metadata.
const BINARY_CHARSET: u16 = 63;

/// `name` as a quoted identifier: `` `a``b` ``.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string as a quoted SQL literal (for metadata queries).
pub fn quote(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    push_string(&mut out, s.as_bytes());
    String::from_utf8(out).unwrap_or_default()
}

/// How a column's text-protocol value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Digits as sent (integers, DECIMAL, FLOAT, DOUBLE, YEAR).
    Number,
    /// A quoted, escaped string (text, dates and times, ENUM, SET, JSON).
    Text,
    /// A hexadecimal literal (BLOB, BINARY, VARBINARY, BIT, GEOMETRY: bytes in no character set).
    Binary,
}

impl Kind {
    /// The kind of a result column.
    pub fn of(column_type: ColumnType, charset: u16) -> Kind {
        use ColumnType as T;
        match column_type {
            T::MYSQL_TYPE_DECIMAL
            | T::MYSQL_TYPE_NEWDECIMAL
            | T::MYSQL_TYPE_TINY
            | T::MYSQL_TYPE_SHORT
            | T::MYSQL_TYPE_LONG
            | T::MYSQL_TYPE_LONGLONG
            | T::MYSQL_TYPE_INT24
            | T::MYSQL_TYPE_YEAR
            | T::MYSQL_TYPE_FLOAT
            | T::MYSQL_TYPE_DOUBLE => Kind::Number,
            T::MYSQL_TYPE_BIT | T::MYSQL_TYPE_GEOMETRY => Kind::Binary,
            // MySQL reports JSON in the binary character set, yet it only accepts text.
            T::MYSQL_TYPE_JSON => Kind::Text,
            T::MYSQL_TYPE_TINY_BLOB
            | T::MYSQL_TYPE_MEDIUM_BLOB
            | T::MYSQL_TYPE_LONG_BLOB
            | T::MYSQL_TYPE_BLOB
            | T::MYSQL_TYPE_VARCHAR
            | T::MYSQL_TYPE_VAR_STRING
            | T::MYSQL_TYPE_STRING
                if charset == BINARY_CHARSET =>
            {
                Kind::Binary
            }
            _ => Kind::Text,
        }
    }
}

/// Appends one value.
pub fn push_value(out: &mut Vec<u8>, kind: Kind, bytes: &[u8]) {
    match kind {
        Kind::Number => out.extend_from_slice(bytes),
        Kind::Text => push_string(out, bytes),
        Kind::Binary => {
            if bytes.is_empty() {
                out.extend_from_slice(b"''");
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(b"0x");
                out.reserve(bytes.len() * 2);
                for b in bytes {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
            }
        }
    }
}

/// Appends `'...'` with the escapes of `mysql_real_escape_string`, so that a statement never
/// contains a raw newline (a restore splits statements at line ends).
pub fn push_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'\'');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            0 => b"\\0",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\\' => b"\\\\",
            b'\'' => b"\\'",
            0x1a => b"\\Z",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'\'');
}

/// `SHOW CREATE TABLE` split for a fast load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitDdl {
    /// The table with its primary key (and whatever key its AUTO_INCREMENT column needs).
    pub create: String,
    /// Secondary indexes: `KEY ...`, `UNIQUE KEY ...`, `FULLTEXT KEY ...`, `SPATIAL KEY ...`.
    pub indexes: Vec<String>,
    /// `CONSTRAINT ... FOREIGN KEY ...`.
    pub foreign_keys: Vec<String>,
}

impl SplitDdl {
    /// `ALTER TABLE t ADD ..., ADD ...` for the indexes, if any.
    pub fn add_indexes(&self, table: &str) -> Option<String> {
        alter(table, &self.indexes)
    }

    /// `ALTER TABLE t ADD CONSTRAINT ...` for the foreign keys, if any.
    pub fn add_foreign_keys(&self, table: &str) -> Option<String> {
        alter(table, &self.foreign_keys)
    }
}

fn alter(table: &str, parts: &[String]) -> Option<String> {
    if parts.is_empty() {
        return None;
    }
    let adds: Vec<String> = parts.iter().map(|p| format!("ADD {p}")).collect();
    Some(format!("ALTER TABLE {} {}", ident(table), adds.join(", ")))
}

/// Splits the statement MySQL and MariaDB print, one definition per line. Anything it does not
/// recognise stays in the `CREATE TABLE`, so the worst case is a slower load, never a lost index.
pub fn split_create_table(ddl: &str) -> SplitDdl {
    let lines: Vec<&str> = ddl.lines().collect();
    if lines.len() < 3 {
        return SplitDdl {
            create: ddl.to_string(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
        };
    }
    let auto_inc = lines.iter().find_map(|l| {
        let t = l.trim_start();
        (t.starts_with('`') && t.contains(" AUTO_INCREMENT")).then(|| first_ident(t))?
    });
    let pk_first = lines.iter().find_map(|l| {
        let t = l.trim_start();
        t.strip_prefix("PRIMARY KEY ")
            .and_then(|rest| first_ident(rest.trim_start_matches('(')))
    });
    let mut keep: Vec<String> = Vec::new();
    let mut indexes = Vec::new();
    let mut foreign_keys = Vec::new();
    let mut auto_inc_covered = auto_inc.is_none() || auto_inc == pk_first;
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        if i == 0 || i == last {
            keep.push((*line).to_string());
            continue;
        }
        let def = line.trim().trim_end_matches(',').to_string();
        let is_index = ["KEY ", "UNIQUE KEY ", "FULLTEXT KEY ", "SPATIAL KEY "]
            .iter()
            .any(|p| def.starts_with(p));
        let is_fk = def.starts_with("CONSTRAINT ") && def.contains(" FOREIGN KEY ");
        if is_index {
            // The AUTO_INCREMENT column must lead some key while rows are loaded.
            let cols = def.split_once(" (").map(|(_, c)| c).unwrap_or("");
            if !auto_inc_covered && first_ident(cols) == auto_inc {
                auto_inc_covered = true;
                keep.push(format!("  {def}"));
            } else {
                indexes.push(def);
            }
        } else if is_fk {
            foreign_keys.push(def);
        } else {
            keep.push(format!("  {def}"));
        }
    }
    // Re-join the kept definitions with commas between them.
    let body = &keep[1..keep.len() - 1];
    let mut create = String::with_capacity(ddl.len());
    create.push_str(&keep[0]);
    create.push('\n');
    create.push_str(&body.join(",\n"));
    create.push('\n');
    create.push_str(&keep[keep.len() - 1]);
    SplitDdl {
        create,
        indexes,
        foreign_keys,
    }
}

/// The AUTO_INCREMENT column of a `SHOW CREATE TABLE` statement, if it has one.
pub fn auto_increment_column(ddl: &str) -> Option<String> {
    ddl.lines().skip(1).find_map(|l| {
        let t = l.trim_start();
        (t.starts_with('`') && t.contains(" AUTO_INCREMENT")).then(|| first_ident(t))?
    })
}

/// The first backquoted identifier of `s`.
fn first_ident(s: &str) -> Option<String> {
    let s = s.trim_start();
    let rest = s.strip_prefix('`')?;
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            if chars.peek() == Some(&'`') {
                chars.next();
                out.push('`');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_never_contain_raw_newlines_and_round_trip_escapes() {
        let mut out = Vec::new();
        push_string(&mut out, b"a'b\\c\nd\re\0f\x1ag");
        assert_eq!(out, b"'a\\'b\\\\c\\nd\\re\\0f\\Zg'");
        let mut out = Vec::new();
        push_value(&mut out, Kind::Binary, &[0, 0xff, 0x10]);
        assert_eq!(out, b"0x00FF10");
        assert_eq!(ident("a`b"), "`a``b`");
    }

    #[test]
    fn splits_secondary_indexes_and_foreign_keys_off() {
        let ddl = "CREATE TABLE `logs` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  `user_id` bigint(20) DEFAULT NULL,\n  `other` longtext DEFAULT NULL CHECK (json_valid(`other`)),\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u` (`user_id`,`id`),\n  KEY `idx_logs_user_id` (`user_id`),\n  CONSTRAINT `CONSTRAINT_1` CHECK (`user_id` > 0),\n  CONSTRAINT `fk_user` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb4";
        let s = split_create_table(ddl);
        assert_eq!(
            s.create,
            "CREATE TABLE `logs` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  `user_id` bigint(20) DEFAULT NULL,\n  `other` longtext DEFAULT NULL CHECK (json_valid(`other`)),\n  PRIMARY KEY (`id`),\n  CONSTRAINT `CONSTRAINT_1` CHECK (`user_id` > 0)\n) ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb4"
        );
        assert_eq!(
            s.add_indexes("logs").unwrap(),
            "ALTER TABLE `logs` ADD UNIQUE KEY `u` (`user_id`,`id`), ADD KEY `idx_logs_user_id` (`user_id`)"
        );
        assert_eq!(
            s.add_foreign_keys("logs").unwrap(),
            "ALTER TABLE `logs` ADD CONSTRAINT `fk_user` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`)"
        );
    }

    #[test]
    fn keeps_the_key_an_auto_increment_column_needs() {
        let ddl = "CREATE TABLE `t` (\n  `a` int NOT NULL,\n  `id` int NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`a`,`id`),\n  KEY `k_id` (`id`),\n  KEY `k_a` (`a`)\n) ENGINE=InnoDB";
        let s = split_create_table(ddl);
        assert!(s.create.contains("KEY `k_id` (`id`)"), "{}", s.create);
        assert_eq!(s.indexes, vec!["KEY `k_a` (`a`)".to_string()]);
    }
}
