//! Token counts for OpenAI's byte-pair encodings (o200k and cl100k), in a few MB.
//!
//! Sluice counts tokens (for reservations, and for streams whose provider reports no usage)
//! but never needs the tokens themselves. `tiktoken-rs` builds a tokenizer that can also
//! decode: for o200k and cl100k, hash maps of one heap-allocated `Vec<u8>` per token in both
//! directions plus a sorted copy, about 70 MB of the gateway's idle memory. This crate keeps
//! what counting needs: the vocabulary's bytes in one static block (`data/`, generated from
//! `tiktoken-rs` and checked against it by `tests/tiktoken.rs`), an offset per token, and one
//! hash table of 4-byte ranks. The split into pieces (the encodings' own regular
//! expressions) and the merge (the byte-pair loop of OpenAI's `tiktoken`, MIT) are the same
//! as tiktoken's, so the counts are equal; the tests compare them on a varied corpus.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use fancy_regex::Regex;
use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;

mod merge;

/// A token's rank (its id) in an encoding.
pub type Rank = u32;

/// One encoding, ready to count. Get one with [`Encoding::o200k`] or [`Encoding::cl100k`];
/// each is built once per process (~10 ms) and shared.
pub struct Encoding {
    /// Every token's bytes, rank after rank.
    bytes: &'static [u8],
    /// Where each rank's bytes start in `bytes`; one more entry than ranks, for the end.
    starts: Box<[u32]>,
    /// The ranks, found by their bytes.
    table: HashTable<Rank>,
    hasher: DefaultHashBuilder,
    pieces: Regex,
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoding")
            .field("tokens", &self.table.len())
            .finish()
    }
}

/// The pre-tokenizer of o200k (GPT-4o, GPT-4.1, GPT-5, the o-series), as in `tiktoken`.
const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+"
);

/// The pre-tokenizer of cl100k (GPT-4, GPT-3.5, the OpenAI embeddings), as in `tiktoken`.
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

static O200K: OnceLock<Option<Encoding>> = OnceLock::new();
static CL100K: OnceLock<Option<Encoding>> = OnceLock::new();

/// Why an encoding could not be built from its data.
#[derive(Debug)]
pub enum BuildError {
    /// The data file is not in the [`Vocabulary`] layout.
    Vocabulary,
    Pattern(Box<fancy_regex::Error>),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Vocabulary => f.write_str("the vocabulary data is not well formed"),
            BuildError::Pattern(e) => write!(f, "the pre-tokenizer does not compile: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Builds an encoding once; `None` if its compiled-in data were broken (the tests rule
/// that out), so that callers estimate instead of failing a request.
fn once(
    cell: &'static OnceLock<Option<Encoding>>,
    data: &'static [u8],
    pattern: &str,
) -> Option<&'static Encoding> {
    cell.get_or_init(|| Encoding::build(data, pattern).ok())
        .as_ref()
}

impl Encoding {
    /// o200k_base (`None` only if the compiled-in data were broken).
    pub fn o200k() -> Option<&'static Encoding> {
        once(
            &O200K,
            include_bytes!("../data/o200k_base.bin"),
            O200K_PATTERN,
        )
    }

    /// cl100k_base (`None` only if the compiled-in data were broken).
    pub fn cl100k() -> Option<&'static Encoding> {
        once(
            &CL100K,
            include_bytes!("../data/cl100k_base.bin"),
            CL100K_PATTERN,
        )
    }

    /// Builds an encoding from its data file (see [`Vocabulary`]) and its pre-tokenizer.
    pub fn build(data: &'static [u8], pattern: &str) -> Result<Encoding, BuildError> {
        let vocab = Vocabulary::parse(data).ok_or(BuildError::Vocabulary)?;
        let pieces = Regex::new(pattern).map_err(|e| BuildError::Pattern(Box::new(e)))?;
        let mut starts = Vec::with_capacity(vocab.lens.len() + 1);
        let mut at = 0u32;
        for &len in vocab.lens {
            starts.push(at);
            at += u32::from(len);
        }
        starts.push(at);
        let mut enc = Encoding {
            bytes: vocab.bytes,
            starts: starts.into_boxed_slice(),
            table: HashTable::with_capacity(vocab.lens.len()),
            hasher: DefaultHashBuilder::default(),
            pieces,
        };
        for rank in 0..vocab.lens.len() as Rank {
            let token = enc.token(rank);
            // An empty token marks a rank the encoding does not use.
            if token.is_empty() {
                continue;
            }
            let hash = enc.hasher.hash_one(token);
            let Encoding {
                table,
                bytes,
                starts,
                hasher,
                ..
            } = &mut enc;
            table.insert_unique(hash, rank, |&r| {
                hasher
                    .hash_one(&bytes[starts[r as usize] as usize..starts[r as usize + 1] as usize])
            });
        }
        Ok(enc)
    }

    /// Number of tokens in the vocabulary.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The bytes of a rank (empty for a rank the encoding does not use).
    pub fn token(&self, rank: Rank) -> &[u8] {
        let r = rank as usize;
        match (self.starts.get(r), self.starts.get(r + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The rank of a token, if these bytes are one.
    pub fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        let hash = self.hasher.hash_one(bytes);
        self.table.find(hash, |&r| self.token(r) == bytes).copied()
    }

    /// How many tokens `text` encodes to, as `encode_ordinary` (special tokens are text).
    pub fn count(&self, text: &str) -> usize {
        let mut n = 0;
        for m in self.pieces.find_iter(text) {
            // The patterns have no backreferences and bounded look-around: a match never
            // fails at run time, but if one did the rest would be estimated, not lost.
            let Ok(m) = m else {
                let done = n;
                return done + text.len().div_ceil(4);
            };
            let piece = m.as_str().as_bytes();
            n += if self.rank(piece).is_some() {
                1
            } else {
                merge::count(piece, |b| self.rank(b))
            };
        }
        n
    }
}

/// The layout of `data/*.bin`: the number of ranks (u32, little-endian), then each rank's
/// length in bytes (one byte each; 0 for an unused rank), then all tokens' bytes in rank
/// order.
pub struct Vocabulary<'a> {
    pub lens: &'a [u8],
    pub bytes: &'a [u8],
}

impl<'a> Vocabulary<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Vocabulary<'a>> {
        let (n, rest) = data.split_first_chunk::<4>()?;
        let n = u32::from_le_bytes(*n) as usize;
        let (lens, bytes) = rest.split_at_checked(n)?;
        let total: usize = lens.iter().map(|&l| usize::from(l)).sum();
        (total == bytes.len() && u32::try_from(total).is_ok()).then_some(Vocabulary { lens, bytes })
    }

    /// Writes the layout [`Vocabulary::parse`] reads; `None` if a token is longer than 255
    /// bytes (none of OpenAI's is).
    pub fn write(tokens: &[Vec<u8>]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(tokens.len()).ok()?.to_le_bytes());
        for t in tokens {
            out.push(u8::try_from(t.len()).ok()?);
        }
        for t in tokens {
            out.extend_from_slice(t);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_round_trips_and_refuses_a_short_file() {
        let toks = vec![b"a".to_vec(), Vec::new(), b"bc".to_vec()];
        let data = Vocabulary::write(&toks).unwrap();
        let v = Vocabulary::parse(&data).unwrap();
        assert_eq!(v.lens, &[1, 0, 2]);
        assert_eq!(v.bytes, b"abc");
        assert!(Vocabulary::parse(&data[..data.len() - 1]).is_none());
        assert!(Vocabulary::parse(&data[..3]).is_none());
        assert!(Vocabulary::write(&[vec![0; 256]]).is_none());
    }

    #[test]
    fn broken_data_is_an_error_not_a_panic() {
        assert!(matches!(
            Encoding::build(b"\x05\x00\x00\x00ab", O200K_PATTERN),
            Err(BuildError::Vocabulary)
        ));
        let data: &'static [u8] = b"\x01\x00\x00\x00\x01a";
        assert!(matches!(
            Encoding::build(data, "(unclosed"),
            Err(BuildError::Pattern(_))
        ));
        let tiny = Encoding::build(data, O200K_PATTERN).unwrap();
        assert_eq!(tiny.count("a"), 1);
    }

    #[test]
    fn known_counts() {
        let o = Encoding::o200k().unwrap();
        assert_eq!(o.count("Hello world"), 2);
        assert_eq!(o.count(""), 0);
        assert!(o.rank(b"Hello").is_some());
        assert_eq!(o.token(o.rank(b" world").unwrap()), b" world");
        let c = Encoding::cl100k().unwrap();
        assert_eq!(c.count("Hello world"), 2);
        assert_eq!(c.len(), 100_256);
    }
}
