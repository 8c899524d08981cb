//! The syntax of libpq connection strings: URLs and `key=value` lists, to key/value pairs.
//!
//! Meaning (defaults, environment, validation) is [`super::params`]'s business.

use super::error::SourceError;

fn invalid(reason: impl Into<String>) -> SourceError {
    SourceError::InvalidParams {
        reason: reason.into(),
    }
}

pub(crate) fn parse_url(rest: &str) -> Result<Vec<(String, String)>, SourceError> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let mut pairs = Vec::new();
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), percent_decode(user, "user")?));
            }
            if let Some(p) = password {
                pairs.push(("password".to_owned(), percent_decode(p, "password")?));
            }
            hostport
        }
        None => authority,
    };
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid("an IPv6 address in [brackets] is missing its `]`"))?;
        pairs.push(("host".to_owned(), host.to_owned()));
        if let Some(port) = after.strip_prefix(':') {
            pairs.push(("port".to_owned(), port.to_owned()));
        } else if !after.is_empty() {
            return Err(invalid(format!(
                "unexpected `{after}` after the IPv6 address"
            )));
        }
    } else if !hostport.is_empty() {
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if !host.is_empty() {
            pairs.push(("host".to_owned(), percent_decode(host, "host")?));
        }
        if let Some(port) = port {
            pairs.push(("port".to_owned(), port.to_owned()));
        }
    }
    if !path.is_empty() {
        pairs.push(("dbname".to_owned(), percent_decode(path, "dbname")?));
    }
    for item in query.split('&').filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            invalid(format!(
                "query parameter `{item}` has no value: write key=value"
            ))
        })?;
        pairs.push((
            percent_decode(key, "parameter name")?,
            percent_decode(value, key)?,
        ));
    }
    Ok(pairs)
}

pub(crate) fn parse_conninfo(s: &str) -> Result<Vec<(String, String)>, SourceError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(invalid(format!("`{key}` has no value: write key=value")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(invalid(format!("unterminated quoted value for `{key}`"))),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(s: &str, what: &str) -> Result<String, SourceError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "bad percent-encoding in the {what}: `%` must be followed by two hex digits"
                    ))
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        invalid(format!(
            "the {what} is not valid UTF-8 after percent-decoding"
        ))
    })
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn url_pieces() {
        assert_eq!(
            parse_url("u%3Ax:p%25w@h:1/d%2Fb?a=1&b=%20").unwrap(),
            pairs(&[
                ("user", "u:x"),
                ("password", "p%w"),
                ("host", "h"),
                ("port", "1"),
                ("dbname", "d/b"),
                ("a", "1"),
                ("b", " ")
            ])
        );
        assert_eq!(parse_url("").unwrap(), pairs(&[]));
        assert!(parse_url("[::1").is_err());
        assert!(parse_url("h/db?novalue").is_err());
    }

    #[test]
    fn conninfo_quoting() {
        assert_eq!(
            parse_conninfo(r"a=1  b = 'x y' c=\\z d=''").unwrap(),
            pairs(&[("a", "1"), ("b", "x y"), ("c", r"\z"), ("d", "")])
        );
        assert!(parse_conninfo("a").is_err());
    }

    #[test]
    fn percent_round_trip() {
        for s in ["plain", "a b/c:d@e%f", "ünï"] {
            assert_eq!(percent_decode(&percent_encode(s), "x").unwrap(), s);
        }
        assert!(percent_decode("%4", "x").is_err());
        assert!(percent_decode("%ff", "x").is_err(), "not UTF-8");
    }
}
