//! Parser of pgoutput messages.
