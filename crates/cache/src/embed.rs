//! Sentence embeddings: the [`Embedder`] trait, the local [`Model2Vec`] model and the
//! [`Query`] a semantic lookup or insert carries.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use model2vec_rs::model::StaticModel;

use crate::verify::Analysis;

/// Turns a text into a vector. Implementations must be deterministic (the same text gives
/// the same vector) and return `dim()` floats; [`Query`] normalises them.
pub trait Embedder: Send + Sync {
    /// The embedding of `text`.
    fn embed(&self, text: &str) -> Vec<f32>;
    /// The length of every vector [`Embedder::embed`] returns.
    fn dim(&self) -> usize;

    /// The model's vector for one lower-cased word, and whether its vocabulary has the
    /// word whole. Verification uses it to let a word stand for a close synonym or a
    /// typo stand for the word (see `docs/cache.md`). `None` (the default) when the
    /// embedder has no meaningful word vectors: verification is then word for word.
    fn word(&self, word: &str) -> Option<WordVector> {
        let _ = word;
        None
    }
}

/// One word as the model sees it ([`Embedder::word`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WordVector {
    /// The word's embedding (for a static model, the mean of its tokens' vectors).
    pub vector: Vec<f32>,
    /// Whether the vocabulary holds the word as one token (an unknown word may be a typo).
    pub known: bool,
}

/// Why the local model could not be loaded. The semantic cache is then off; the exact
/// cache works without it. Each variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file the model needs is not there (`scripts/fetch-model` puts them in place).
    #[error("semantic cache model: {} is missing (run scripts/fetch-model)", path.display())]
    Missing { path: PathBuf },
    /// A file is there but cannot be read.
    #[error("semantic cache model: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The files were read but do not make a usable model.
    #[error("semantic cache model in {}: not a usable Model2Vec model: {reason}", dir.display())]
    Invalid { dir: PathBuf, reason: String },
}

/// potion-base-8M (or any Model2Vec static model) run on the CPU: a tokenizer and one
/// embedding row per token, mean-pooled and normalised. About a microsecond per short
/// sentence; no threads, no network.
///
/// It is a bag of words: word order is lost ("USD to EUR" and "EUR to USD" score 1.0),
/// which is why a semantic hit must also pass [`crate::verify()`].
#[derive(Clone)]
pub struct Model2Vec {
    model: StaticModel,
    /// The whole words of the tokenizer's vocabulary (no `##` pieces, no specials).
    vocabulary: Arc<HashSet<Box<str>>>,
}

impl std::fmt::Debug for Model2Vec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model2Vec")
            .field("dim", &self.model.dim())
            .finish()
    }
}

/// The files [`Model2Vec::load`] reads from the model directory.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

impl Model2Vec {
    /// Loads the model in `dir` (`config.json`, `tokenizer.json`, `model.safetensors`).
    /// Reads only those files; never downloads.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let mut bytes = Vec::with_capacity(MODEL_FILES.len());
        for name in MODEL_FILES {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(b) => bytes.push(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(LoadError::Missing { path });
                }
                Err(source) => return Err(LoadError::Read { path, source }),
            }
        }
        let [config, tokenizer, weights]: [Vec<u8>; 3] =
            <[Vec<u8>; 3]>::try_from(bytes).map_err(|_| LoadError::Invalid {
                dir: dir.to_owned(),
                reason: "internal: file count".into(),
            })?;
        let vocabulary = Arc::new(vocabulary(&tokenizer));
        let model =
            StaticModel::from_bytes(tokenizer, weights, config, Some(true)).map_err(|e| {
                LoadError::Invalid {
                    dir: dir.to_owned(),
                    reason: format!("{e:#}"),
                }
            })?;
        let me = Self { model, vocabulary };
        // A model that loads but embeds nothing usable would silently turn every lookup
        // into a miss; say so now instead.
        let probe = me.embed("How do I reset my password?");
        let norm: f32 = probe.iter().map(|x| x * x).sum::<f32>().sqrt();
        if probe.len() != me.dim() || me.dim() == 0 || !(norm > 0.5 && norm < 1.5) {
            return Err(LoadError::Invalid {
                dir: dir.to_owned(),
                reason: format!(
                    "a probe sentence gave {} floats of norm {norm} (want {} of norm 1)",
                    probe.len(),
                    me.dim()
                ),
            });
        }
        Ok(me)
    }
}

impl Embedder for Model2Vec {
    fn embed(&self, text: &str) -> Vec<f32> {
        self.model.encode_single(text)
    }

    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn word(&self, word: &str) -> Option<WordVector> {
        Some(WordVector {
            vector: self.model.encode_single(word),
            known: self.vocabulary.contains(word),
        })
    }
}

/// The whole words of a WordPiece `tokenizer.json` (`model.vocab`'s keys but `##` pieces
/// and `[SPECIAL]` tokens). Empty for another tokenizer: then no word counts as known,
/// and no typo is ever aligned.
fn vocabulary(tokenizer_json: &[u8]) -> HashSet<Box<str>> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(tokenizer_json) else {
        return HashSet::new();
    };
    let Some(vocab) = v.pointer("/model/vocab").and_then(|x| x.as_object()) else {
        return HashSet::new();
    };
    vocab
        .keys()
        .filter(|k| !k.starts_with("##") && !k.starts_with('['))
        .map(|k| k.as_str().into())
        .collect()
}

/// The varying part of a request (the last user turn) with its normalised embedding.
/// Built once per request and used for both the lookup and the insert.
#[derive(Debug, Clone)]
pub struct Query {
    text: String,
    vector: Vec<f32>,
    /// The text analysed for verification, with word vectors when the embedder has
    /// them; `None` from [`Query::from_vector`] (analysed word for word when needed).
    analysis: Option<Arc<Analysis>>,
}

impl Query {
    /// Embeds `text` with `embedder`.
    pub fn new(embedder: &dyn Embedder, text: impl Into<String>) -> Self {
        let text = text.into();
        let vector = embedder.embed(&text);
        let analysis = Arc::new(Analysis::with_words(&text, embedder));
        let mut q = Self::from_vector(text, vector);
        q.analysis = Some(analysis);
        q
    }

    /// A query from a vector computed elsewhere; the vector is normalised to length 1
    /// (a zero or non-finite vector becomes all zeros, which matches nothing).
    pub fn from_vector(text: impl Into<String>, mut vector: Vec<f32>) -> Self {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm.is_finite() && norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        } else {
            vector.iter_mut().for_each(|x| *x = 0.0);
        }
        Self {
            text: text.into(),
            vector,
            analysis: None,
        }
    }

    /// The analysis verification compares: made by [`Query::new`] (with the embedder's
    /// word vectors), else word for word from the text.
    pub fn analysis(&self) -> Arc<Analysis> {
        match &self.analysis {
            Some(a) => Arc::clone(a),
            None => Arc::new(Analysis::of(&self.text)),
        }
    }

    /// The analysis if [`Query::new`] made one.
    pub(crate) fn analysed(&self) -> Option<&Arc<Analysis>> {
        self.analysis.as_ref()
    }

    /// The embedded text, as verification sees it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The normalised vector.
    pub fn vector(&self) -> &[f32] {
        &self.vector
    }

    /// Cosine similarity to another query (both are normalised: a dot product).
    pub fn cosine(&self, other: &Query) -> f32 {
        if self.vector.len() != other.vector.len() {
            return 0.0;
        }
        crate::index::dot(&self.vector, &other.vector)
    }
}
