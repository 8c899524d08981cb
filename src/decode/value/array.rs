//! The array literal form (`array_out`): `{1,2,NULL,"a,b","x\"y"}`.
//!
//! Elements are separated by `,` (every mapped element type uses it; `box`, whose delimiter is
//! `;`, is kept as text and never parsed here). An element is quoted when it is empty, contains
//! `{}",\` or white space, or spells `NULL`; inside quotes `\` escapes the next character. An
//! unquoted `NULL` (any case) is SQL NULL; a quoted one is the string.
//!
//! # Invariants
//! * Elements borrow from the input unless they contained escapes.
//! * Nested braces (multi-dimensional) or a bounds prefix (`[0:1]={..}`) give
//!   [`ValueError::NotOneDimensional`], never a flattened guess.

use std::borrow::Cow;

use super::{ValueError, ValueResult};

/// Parses a one-dimensional array literal into its elements (`None` for NULL).
pub fn parse_array(text: &[u8]) -> ValueResult<Vec<Option<Cow<'_, str>>>> {
    let s = std::str::from_utf8(text).map_err(|_| ValueError::Malformed)?;
    let b = s.as_bytes();
    match b.first() {
        Some(b'{') => {}
        Some(b'[') => return Err(ValueError::NotOneDimensional),
        _ => return Err(ValueError::Malformed),
    }
    let mut out = Vec::new();
    let mut i = 1;
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if b.get(i) == Some(&b'}') {
        return if b.len() == i + 1 {
            Ok(out)
        } else {
            Err(ValueError::Malformed)
        };
    }
    loop {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let element = match b.get(i) {
            None => return Err(ValueError::Malformed),
            Some(b'{') => return Err(ValueError::NotOneDimensional),
            Some(b'"') => {
                let (element, next) = quoted(s, i + 1)?;
                i = next;
                while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
                Some(element)
            }
            Some(_) => {
                let (element, next) = unquoted(s, i)?;
                i = next;
                element
            }
        };
        out.push(element);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') if i + 1 == b.len() => return Ok(out),
            _ => return Err(ValueError::Malformed),
        }
    }
}

/// Appends the character after a backslash at `i` to `owned`; returns the index after it.
fn push_escaped(s: &str, i: usize, owned: &mut String) -> ValueResult<usize> {
    let ch = s
        .get(i + 1..)
        .and_then(|rest| rest.chars().next())
        .ok_or(ValueError::Malformed)?;
    owned.push(ch);
    Ok(i + 1 + ch.len_utf8())
}

/// A quoted element starting at `start` (just past the opening quote); returns the element and
/// the index just past the closing quote.
fn quoted(s: &str, start: usize) -> ValueResult<(Cow<'_, str>, usize)> {
    let b = s.as_bytes();
    let mut owned: Option<String> = None;
    let mut seg = start;
    let mut i = start;
    loop {
        match b.get(i) {
            None => return Err(ValueError::Malformed),
            Some(b'"') => {
                let element = match owned {
                    Some(mut o) => {
                        o.push_str(&s[seg..i]);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(&s[start..i]),
                };
                return Ok((element, i + 1));
            }
            Some(b'\\') => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(&s[seg..i]);
                i = push_escaped(s, i, o)?;
                seg = i;
            }
            Some(_) => i += 1,
        }
    }
}

/// An unquoted element starting at `start`; returns it (`None` for `NULL`) and the index of the
/// delimiter or closing brace that ends it. Surrounding white space is not part of it.
fn unquoted(s: &str, start: usize) -> ValueResult<(Option<Cow<'_, str>>, usize)> {
    let b = s.as_bytes();
    let mut owned: Option<String> = None;
    let mut seg = start;
    let mut i = start;
    // End of the element's content: trailing white space that was not escaped is dropped.
    let mut content_end = start;
    loop {
        match b.get(i) {
            None | Some(b'{' | b'"') => return Err(ValueError::Malformed),
            Some(b',' | b'}') => break,
            Some(b'\\') => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(&s[seg..i]);
                i = push_escaped(s, i, o)?;
                seg = i;
                content_end = i;
            }
            Some(c) => {
                i += 1;
                if !c.is_ascii_whitespace() {
                    content_end = i;
                }
            }
        }
    }
    let element = match owned {
        Some(mut o) => {
            if content_end > seg {
                o.push_str(&s[seg..content_end]);
            }
            Cow::Owned(o)
        }
        None if content_end == start => return Err(ValueError::Malformed),
        None if s[start..content_end].eq_ignore_ascii_case("NULL") => return Ok((None, i)),
        None => Cow::Borrowed(&s[start..content_end]),
    };
    Ok((Some(element), i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn elems(text: &str) -> ValueResult<Vec<Option<String>>> {
        parse_array(text.as_bytes())
            .map(|v| v.into_iter().map(|e| e.map(Cow::into_owned)).collect())
    }

    fn some(items: &[&str]) -> Vec<Option<String>> {
        items.iter().map(|s| Some((*s).to_owned())).collect()
    }

    #[test]
    fn plain_and_nulls() {
        assert_eq!(elems("{}"), Ok(vec![]));
        assert_eq!(elems("{ }"), Ok(vec![]));
        assert_eq!(elems("{1,2,3}"), Ok(some(&["1", "2", "3"])));
        assert_eq!(
            elems(r#"{1,2,NULL,"a,b","x\"y",\\}"#),
            Ok(vec![
                Some("1".into()),
                Some("2".into()),
                None,
                Some("a,b".into()),
                Some("x\"y".into()),
                Some("\\".into()),
            ])
        );
        assert_eq!(
            elems(r#"{"NULL",null,NuLl}"#),
            Ok(vec![Some("NULL".into()), None, None])
        );
        assert_eq!(elems(r#"{"",""}"#), Ok(some(&["", ""])));
        assert_eq!(
            elems(r#"{"a\\b","{x}"," sp "}"#),
            Ok(some(&["a\\b", "{x}", " sp "]))
        );
        assert_eq!(elems(r#"{NULLX,\NULL}"#), Ok(some(&["NULLX", "NULL"])));
    }

    #[test]
    fn borrowing_and_unicode() {
        let text = r#"{héllo,"wörld","a\é"}"#;
        let v = parse_array(text.as_bytes()).unwrap();
        assert!(matches!(v[0], Some(Cow::Borrowed("héllo"))));
        assert!(matches!(v[1], Some(Cow::Borrowed("wörld"))));
        assert_eq!(v[2].as_deref(), Some("aé"));
        assert!(matches!(v[2], Some(Cow::Owned(_))));
    }

    #[test]
    fn white_space_around_unquoted_elements() {
        assert_eq!(elems("{ 1 , 2 }"), Ok(some(&["1", "2"])));
        assert_eq!(elems(r#"{ "a" , b\  }"#), Ok(some(&["a", "b "])));
        assert_eq!(elems("{a b}"), Ok(some(&["a b"])));
    }

    #[test]
    fn timestamps_and_json_elements() {
        assert_eq!(
            elems(r#"{"2024-01-01 00:00:00+00","2024-01-02 00:00:00+00"}"#),
            Ok(some(&["2024-01-01 00:00:00+00", "2024-01-02 00:00:00+00"]))
        );
        assert_eq!(elems(r#"{"{\"a\": 1}"}"#), Ok(some(&[r#"{"a": 1}"#])));
    }

    #[test]
    fn not_one_dimensional() {
        assert_eq!(elems("{{1,2},{3,4}}"), Err(ValueError::NotOneDimensional));
        assert_eq!(elems("[0:1]={1,2}"), Err(ValueError::NotOneDimensional));
        assert_eq!(
            elems("[1:1][1:2]={{1,2}}"),
            Err(ValueError::NotOneDimensional)
        );
        assert_eq!(elems("{{}}"), Err(ValueError::NotOneDimensional));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "{",
            "}",
            "{1,2",
            "{1,2}x",
            "{1,,2}",
            "{,}",
            "{1,}",
            r#"{"a}"#,
            r#"{"a"b}"#,
            r#"{a"b"}"#,
            "{a\\",
            "{\"a\\\"}",
            "1,2",
            "{}}",
            "{} ",
        ] {
            assert_eq!(elems(bad), Err(ValueError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_array(b"{\xff}"), Err(ValueError::Malformed));
    }

    /// `array_out`'s quoting rules.
    fn pg_array_text(items: &[Option<String>]) -> String {
        let parts: Vec<String> = items
            .iter()
            .map(|item| match item {
                None => "NULL".to_owned(),
                Some(s)
                    if s.is_empty()
                        || s.eq_ignore_ascii_case("NULL")
                        || s.chars()
                            .any(|c| "{}\",\\".contains(c) || c.is_ascii_whitespace()) =>
                {
                    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("\"{escaped}\"")
                }
                Some(s) => s.clone(),
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    proptest! {
        #[test]
        fn array_out_round_trip(items in proptest::collection::vec(
            proptest::option::of("[a-zA-Z0-9 ,{}\"\\\\é_.-]{0,8}"), 0..8)) {
            prop_assert_eq!(elems(&pg_array_text(&items)), Ok(items));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_array(&bytes);
        }

        #[test]
        fn random_array_like_text_never_panics(s in "[{}\\[\\]\"\\\\,a NUL:=0-9é]{0,30}") {
            let _ = parse_array(s.as_bytes());
        }
    }
}
