//! A chunk's `INSERT` statement as `LOAD DATA LOCAL INFILE` input: the same rows in LOAD DATA's
//! default text format (tab between fields, newline after each row, `\` escapes, `\N` for NULL),
//! which the server reads with far less work than SQL.
//!
//! Only statements exactly as [`super::dump`] writes them are converted: `INSERT INTO `t`
//! (`a`,`b`) VALUES (...),(...);` with `NULL`, bare numbers, `'...'` strings escaped as
//! [`super::sql::push_string`] escapes them, and `0x...` hexadecimal for bytes in no character
//! set (loaded through `UNHEX`). Anything else gives `None` and the statement is run as it is,
//! so an unexpected statement costs speed, never correctness.

/// One statement's rows, ready for `LOAD DATA LOCAL INFILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Infile {
    /// `LOAD DATA LOCAL INFILE ... INTO TABLE `t` ... (`a`,@c2) SET `b` = UNHEX(@c2)`.
    pub statement: String,
    /// The rows in LOAD DATA's text format.
    pub data: Vec<u8>,
    /// How many rows `data` holds.
    pub rows: u64,
}

/// How the values of one column were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Only NULL or `''` so far: loads the same as text or as bytes.
    Nothing,
    Text,
    Number,
    Hex,
}

/// Converts one `INSERT` statement (one line of a chunk file, with or without its `;` and line
/// end); `None` when it is not exactly the form the backup writes, or when it puts `0` into
/// `auto_increment` (the table's AUTO_INCREMENT column, quoted): LOAD DATA ignores
/// `NO_AUTO_VALUE_ON_ZERO` and would give that row a new id, INSERT keeps the 0.
pub fn convert(stmt: &[u8], auto_increment: Option<&str>) -> Option<Infile> {
    let mut p = Parser { s: stmt, i: 0 };
    p.keyword(b"INSERT INTO ")?;
    let table = p.ident()?;
    p.keyword(b" (")?;
    let mut columns = vec![p.ident()?];
    while p.eat(b',') {
        columns.push(p.ident()?);
    }
    p.keyword(b") VALUES ")?;
    let auto_inc = auto_increment.and_then(|a| columns.iter().position(|c| c == a));
    let mut seen = vec![Seen::Nothing; columns.len()];
    // LOAD DATA's format is a little shorter than the SQL (no quotes, no parentheses).
    let mut data = Vec::with_capacity(stmt.len() - stmt.len() / 16);
    let mut rows = 0u64;
    loop {
        p.keyword(b"(")?;
        for (c, kind) in seen.iter_mut().enumerate() {
            if c > 0 {
                p.keyword(b",")?;
                data.push(b'\t');
            }
            let start = data.len();
            p.value(&mut data, kind)?;
            if Some(c) == auto_inc && data[start..] == *b"0" {
                return None;
            }
        }
        p.keyword(b")")?;
        data.push(b'\n');
        rows += 1;
        if !p.eat(b',') {
            break;
        }
    }
    // The end: `;`, then only the line end.
    p.eat(b';');
    if !p.s[p.i..].iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let mut targets = Vec::with_capacity(columns.len());
    let mut sets = Vec::new();
    for (c, (name, kind)) in columns.iter().zip(&seen).enumerate() {
        if *kind == Seen::Hex {
            targets.push(format!("@c{c}"));
            sets.push(format!("{name} = UNHEX(@c{c})"));
        } else {
            targets.push(name.clone());
        }
    }
    let mut statement = format!(
        "LOAD DATA LOCAL INFILE 'newapi-ops-chunk' INTO TABLE {table} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' \
         STARTING BY '' ({})",
        targets.join(",")
    );
    if !sets.is_empty() {
        statement.push_str(" SET ");
        statement.push_str(&sets.join(", "));
    }
    Some(Infile {
        statement,
        data,
        rows,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn keyword(&mut self, k: &[u8]) -> Option<()> {
        if self.s[self.i..].starts_with(k) {
            self.i += k.len();
            Some(())
        } else {
            None
        }
    }

    /// A backquoted identifier, returned as written (still quoted, valid in SQL).
    fn ident(&mut self) -> Option<String> {
        let start = self.i;
        if !self.eat(b'`') {
            return None;
        }
        loop {
            match self.s.get(self.i)? {
                b'`' if self.s.get(self.i + 1) == Some(&b'`') => self.i += 2,
                b'`' => {
                    self.i += 1;
                    break;
                }
                _ => self.i += 1,
            }
        }
        String::from_utf8(self.s[start..self.i].to_vec()).ok()
    }

    /// One value, appended to `out` as a LOAD DATA field; `kind` must stay one kind per column.
    fn value(&mut self, out: &mut Vec<u8>, kind: &mut Seen) -> Option<()> {
        let rest = &self.s[self.i..];
        if rest.starts_with(b"NULL") && matches!(rest.get(4), Some(b',' | b')')) {
            self.i += 4;
            out.extend_from_slice(b"\\N");
            return Some(());
        }
        match rest.first()? {
            b'\'' => {
                self.i += 1;
                let start = out.len();
                self.string(out)?;
                if out.len() > start {
                    settle(kind, Seen::Text)?;
                }
                Some(())
            }
            b'0' if rest.get(1) == Some(&b'x') => {
                self.i += 2;
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_hexdigit) {
                    self.i += 1;
                }
                let digits = &self.s[start..self.i];
                if digits.is_empty() || !digits.len().is_multiple_of(2) {
                    return None;
                }
                settle(kind, Seen::Hex)?;
                out.extend_from_slice(digits);
                Some(())
            }
            _ => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
                {
                    self.i += 1;
                }
                let number = &self.s[start..self.i];
                // Digits, a sign, a point, an exponent: what the server sends for numbers.
                if number.is_empty()
                    || !number.iter().all(|b| {
                        b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
                    })
                {
                    return None;
                }
                settle(kind, Seen::Number)?;
                out.extend_from_slice(number);
                Some(())
            }
        }
    }

    /// The inside of a `'...'` literal (the opening quote consumed), unescaped as the server
    /// reads it and escaped again for LOAD DATA.
    fn string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            let raw = match b {
                b'\'' => return Some(()),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'0' => 0,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b'Z' => 0x1a,
                        b'\\' | b'\'' | b'"' => e,
                        b't' => b'\t',
                        b'b' => 0x08,
                        // `\%` and `\_` keep their backslash in MySQL; anything else: not ours.
                        _ => return None,
                    }
                }
                _ => b,
            };
            match raw {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                0 => out.extend_from_slice(b"\\0"),
                _ => out.push(raw),
            }
        }
    }
}

/// Records the kind of a column's value; `None` when a column mixes kinds.
fn settle(kind: &mut Seen, now: Seen) -> Option<()> {
    if *kind == Seen::Nothing || *kind == now {
        *kind = now;
        Some(())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::sql::{Kind, push_value};

    /// Reads LOAD DATA's text format back the way the server does (default FIELDS/LINES).
    fn read_back(data: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = Vec::new();
        let mut null = false;
        let mut i = 0;
        while i < data.len() {
            match data[i] {
                b'\\' => {
                    i += 1;
                    match data[i] {
                        b'N' => null = true,
                        b'0' => field.push(0),
                        b'n' => field.push(b'\n'),
                        b'r' => field.push(b'\r'),
                        b't' => field.push(b'\t'),
                        b'Z' => field.push(0x1a),
                        b'b' => field.push(0x08),
                        other => field.push(other),
                    }
                }
                b'\t' | b'\n' => {
                    row.push(if null {
                        None
                    } else {
                        Some(std::mem::take(&mut field))
                    });
                    field.clear();
                    null = false;
                    if data[i] == b'\n' {
                        rows.push(std::mem::take(&mut row));
                    }
                }
                b => field.push(b),
            }
            i += 1;
        }
        rows
    }

    #[test]
    fn nasty_values_round_trip_through_the_text_format() {
        let nasty: &[&[u8]] = &[
            b"",
            b"NULL",
            b"\\N",
            b"N",
            b"tab\there",
            b"line\nend\r\n",
            b"nul\0byte",
            b"back\\slash\\",
            b"quote' \"double\"",
            b"\x1actrl-z",
            b"\\0 \\n \\t literally",
            "模型倍率 1.00，补全倍率 2.00 🦀".as_bytes(),
            b"trailing backslash \\",
            b"%_ like",
        ];
        let mut stmt = b"INSERT INTO `we``ird` (`id`,`t`,`b`,`n`) VALUES ".to_vec();
        let mut expected = Vec::new();
        for (i, v) in nasty.iter().enumerate() {
            if i > 0 {
                stmt.push(b',');
            }
            stmt.push(b'(');
            let id = format!("{}", i as i64 - 3);
            push_value(&mut stmt, Kind::Number, id.as_bytes());
            stmt.push(b',');
            push_value(&mut stmt, Kind::Text, v);
            stmt.push(b',');
            // Binary: the same bytes, or empty, or NULL.
            let bin: Option<&[u8]> = match i % 3 {
                0 => Some(v),
                1 => Some(b""),
                _ => None,
            };
            match bin {
                Some(b) => push_value(&mut stmt, Kind::Binary, b),
                None => stmt.extend_from_slice(b"NULL"),
            }
            stmt.push(b',');
            stmt.extend_from_slice(if i % 2 == 0 { b"-1.5e-300" } else { b"NULL" });
            stmt.push(b')');
            expected.push((id, v.to_vec(), bin.map(<[u8]>::to_vec), i % 2 == 0));
        }
        stmt.extend_from_slice(b";\n");
        let got = convert(&stmt, None).expect("our own statement converts");
        assert_eq!(got.rows, nasty.len() as u64);
        assert!(
            got.statement.starts_with(
                "LOAD DATA LOCAL INFILE 'newapi-ops-chunk' INTO TABLE `we``ird` CHARACTER SET utf8mb4"
            ),
            "{}",
            got.statement
        );
        assert!(
            got.statement
                .ends_with("(`id`,`t`,@c2,`n`) SET `b` = UNHEX(@c2)"),
            "{}",
            got.statement
        );
        let rows = read_back(&got.data);
        assert_eq!(rows.len(), nasty.len());
        for (row, (id, text, bin, n)) in rows.iter().zip(&expected) {
            assert_eq!(row[0].as_deref(), Some(id.as_bytes()));
            assert_eq!(row[1].as_deref(), Some(text.as_slice()), "{row:?}");
            // The binary column holds hex digits, loaded through UNHEX.
            let hex = bin.as_ref().map(|b| {
                b.iter()
                    .map(|x| format!("{x:02X}"))
                    .collect::<String>()
                    .into_bytes()
            });
            assert_eq!(row[2], hex);
            assert_eq!(row[3].is_some(), *n);
        }
    }

    #[test]
    fn anything_unexpected_is_left_to_sql() {
        for bad in [
            &b"INSERT INTO `t` VALUES (1);"[..],
            b"INSERT INTO `t` (`a`) VALUES (1),(0x0);",
            b"INSERT INTO `t` (`a`) VALUES (0xAB),('text');",
            b"INSERT INTO `t` (`a`) VALUES ('a\\%b');",
            b"INSERT INTO `t` (`a`) VALUES ('unterminated);",
            b"INSERT INTO `t` (`a`,`b`) VALUES (1);",
            b"INSERT INTO `t` (`a`) VALUES (1); DROP TABLE t;",
            b"INSERT INTO `t` (`a`) VALUES (NOW());",
            b"SET NAMES utf8mb4;",
        ] {
            assert_eq!(convert(bad, None), None, "{}", String::from_utf8_lossy(bad));
        }
        // Empty binary next to bytes in one column is fine.
        let ok = convert(
            b"INSERT INTO `t` (`a`) VALUES (''),(0x00FF),(NULL);\n",
            None,
        )
        .unwrap();
        assert_eq!(ok.data, b"\n00FF\n\\N\n");
        assert!(ok.statement.ends_with("(@c0) SET `a` = UNHEX(@c0)"));
        // A 0 in the AUTO_INCREMENT column stays with INSERT (NO_AUTO_VALUE_ON_ZERO).
        let zero = b"INSERT INTO `t` (`x`,`id`) VALUES (0,1),(5,0);\n";
        assert_eq!(convert(zero, Some("`id`")), None);
        assert!(convert(zero, Some("`x`")).is_none());
        assert!(convert(zero, None).is_some());
    }
}
