//! Wires source → decode → capture → sink and owns shutdown.
