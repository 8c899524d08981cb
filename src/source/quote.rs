//! Quoting of identifiers and literals for replication commands and DDL we generate.
//!
//! The replication command scanner knows `"ident"` with `""` escapes and `'literal'` with
//! `''` escapes, and no backslash escapes, the same as SQL with
//! `standard_conforming_strings = on` (the default since 9.1). NUL bytes cannot travel in a
//! query at all; the encoder rejects them.

/// `"name"`, with embedded double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'`, with embedded single quotes doubled.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `schema.table` (split at the first dot) as a quoted qualified name; a name without a dot is
/// quoted as one identifier and resolved through `search_path` by the server.
pub fn quote_qualified(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
        None => quote_ident(name),
    }
}

/// The value of pgoutput's `publication_names` option: a comma-separated list of quoted
/// identifiers, e.g. `"orders","audit ""x"""`.
pub fn publication_names<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("slot"), "\"slot\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"back\slash"), r"'back\slash'");
        assert_eq!(quote_qualified("public.Orders"), "\"public\".\"Orders\"");
        assert_eq!(quote_qualified("orders"), "\"orders\"");
        assert_eq!(publication_names(&["a", "b\"c"]), "\"a\",\"b\"\"c\"");
    }
}
