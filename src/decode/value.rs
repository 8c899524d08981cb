//! Parsers from the Postgres text form of a value to typed values.
