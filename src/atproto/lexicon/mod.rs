//! Lexicon validation.
