//! Metric names, defined once (STYLE.md §12).
