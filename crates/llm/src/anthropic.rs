//! Anthropic Messages API. (Being written; see the adapter task.)
