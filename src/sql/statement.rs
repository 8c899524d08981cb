//! Which statements the seam runs: queries, recognised by their first keyword before anything
//! is sent.
//!
//! ```text
//!  "  /* c */ -- c\n (SELECT …"  ──► skip blanks, comments, "(" ──► SELECT ──► allowed
//!  "COPY t FROM …", "SET …", "COMMIT", "CALL p()"                ──► refused (ReadOnlyViolation)
//! ```
//!
//! This is the first of two walls, not the only one: a `WITH … INSERT`, a `SELECT … INTO`,
//! a `SELECT … FOR UPDATE` or a function that writes start with an allowed keyword and are
//! refused by the target itself (a `READ ONLY` transaction, DataFusion's `SQLOptions`). What
//! this check adds is that statements a read-only transaction would still run (`SET`,
//! transaction control that would end the read-only transaction, `CALL`, `DO`, `COPY … TO`,
//! `LISTEN`, `PREPARE`, `LOCK`, …) never reach a target.
//!
//! # Invariants
//! * Comments are skipped as Postgres reads them (`--` to the end of the line, `/* */`
//!   nested); an unterminated comment is an empty statement.
//! * Keywords compare case-insensitively and must end at a non-identifier character
//!   (`selectx` is not `SELECT`).

/// The first keywords of the statements the seam runs.
pub const QUERY_KEYWORDS: &[&str] = &[
    "SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "SHOW", "DESCRIBE",
];

/// Why a statement is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing but blanks and comments.
    Empty,
    /// A statement that is not a query; the keyword it starts with, uppercase (at most 32
    /// characters, so a message never carries much of the SQL).
    NotAQuery(String),
}

/// The first word of `sql` after blanks, comments and opening parentheses, or `None` when
/// there is none.
pub fn first_word(sql: &str) -> Option<&str> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b if b.is_ascii_whitespace() || b == b'(' => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                loop {
                    if i + 1 >= bytes.len() {
                        return None;
                    }
                    match (bytes[i], bytes[i + 1]) {
                        (b'/', b'*') => {
                            depth += 1;
                            i += 2;
                        }
                        (b'*', b'/') => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            _ => break,
        }
    }
    let rest = &sql[i..];
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let word = &rest[..end];
    if word.is_empty() {
        // A statement starting with a symbol (`;`, `\`): report its first character.
        return rest.chars().next().map(|c| &rest[..c.len_utf8()]);
    }
    Some(word)
}

/// Whether `sql` is a statement the seam runs (see the module docs).
pub fn check_query(sql: &str) -> Result<(), Refusal> {
    let Some(word) = first_word(sql) else {
        return Err(Refusal::Empty);
    };
    if QUERY_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
        return Ok(());
    }
    let mut shown: String = word.chars().take(32).collect();
    shown.make_ascii_uppercase();
    Err(Refusal::NotAQuery(shown))
}

/// [`check_query`] as the seam's error for `target`.
pub(crate) fn refuse_non_query(target: &str, sql: &str) -> Result<(), super::SqlError> {
    match check_query(sql) {
        Ok(()) => Ok(()),
        Err(Refusal::Empty) => Err(super::SqlError::Sql {
            target: target.to_owned(),
            sqlstate: None,
            message: "the statement is empty".to_owned(),
            hint: "give a query, e.g. SELECT count(*) FROM <table>".to_owned(),
        }),
        Err(Refusal::NotAQuery(word)) => Err(super::SqlError::ReadOnlyViolation {
            target: target.to_owned(),
            what: format!("a {word} statement"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "select 1",
            "  \n\tSeLeCt 1",
            "(SELECT 1) UNION (SELECT 2)",
            "-- a comment\nSELECT 1",
            "/* a /* nested */ comment */ WITH x AS (SELECT 1) SELECT * FROM x",
            "VALUES (1), (2)",
            "TABLE orders",
            "EXPLAIN SELECT 1",
            "SHOW TimeZone",
            "DESCRIBE orders",
            "select\n1",
            "SELECT(1)",
        ] {
            assert_eq!(check_query(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        let cases = [
            ("INSERT INTO t VALUES (1)", "INSERT"),
            ("copy t from stdin", "COPY"),
            ("COPY (SELECT 1) TO STDOUT", "COPY"),
            ("SET statement_timeout = 0", "SET"),
            ("COMMIT", "COMMIT"),
            ("begin; select 1", "BEGIN"),
            ("CALL p()", "CALL"),
            ("DO $$ BEGIN END $$", "DO"),
            ("CREATE TABLE t (a int)", "CREATE"),
            ("/* SELECT */ DELETE FROM t", "DELETE"),
            ("-- SELECT\nUPDATE t SET a = 1", "UPDATE"),
            ("selectx 1", "SELECTX"),
            ("; SELECT 1", ";"),
            ("\\copy t from f", "\\"),
            ("LOCK TABLE t", "LOCK"),
        ];
        for (sql, word) in cases {
            assert_eq!(
                check_query(sql),
                Err(Refusal::NotAQuery(word.to_owned())),
                "{sql}"
            );
        }
        let long = "x".repeat(100);
        assert_eq!(
            check_query(&long),
            Err(Refusal::NotAQuery("X".repeat(32))),
            "at most 32 characters of the statement are kept"
        );
    }

    #[test]
    fn empty_statements() {
        for sql in [
            "",
            "   ",
            "-- only a comment",
            "/* open",
            "/* a */ /* b /* c */",
            "(((",
        ] {
            assert_eq!(check_query(sql), Err(Refusal::Empty), "{sql:?}");
        }
    }

    #[test]
    fn refusals_become_errors() {
        let err = refuse_non_query("memory", "DROP TABLE t").unwrap_err();
        assert!(
            matches!(&err, super::super::SqlError::ReadOnlyViolation { what, .. } if what == "a DROP statement"),
            "{err:?}"
        );
        let err = refuse_non_query("memory", " ").unwrap_err();
        assert!(matches!(err, super::super::SqlError::Sql { .. }), "{err:?}");
    }
}
