//! `batchEmbedContents`: one request per input string, one embedding back for each, in
//! order.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{DecodeError, Embedding, EmbeddingsRequest, EmbeddingsResponse, Rest, TranslateError};

/// The `batchEmbedContents` body. Gemini embeds text only, so token arrays are refused;
/// OpenAI's `dimensions` becomes `outputDimensionality`.
pub fn encode_embeddings(req: &EmbeddingsRequest, model: &str) -> Result<Value, TranslateError> {
    let texts: Vec<&str> = match &req.input {
        Value::String(text) => vec![text],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str().ok_or_else(|| {
                    TranslateError::Unsupported("Gemini embeds text only, not token arrays".into())
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(TranslateError::Unsupported(
                "embeddings input must be text".into(),
            ));
        }
    };
    if texts.is_empty() {
        return Err(TranslateError::Unsupported(
            "embeddings input is empty".into(),
        ));
    }
    let model = if model.starts_with("models/") {
        model.to_owned()
    } else {
        format!("models/{model}")
    };
    let dimensions = req.rest.get("dimensions").and_then(Value::as_u64);
    let requests: Vec<Value> = texts
        .into_iter()
        .map(|text| {
            let mut request = json!({"model": model, "content": {"parts": [{"text": text}]}});
            if let Some(d) = dimensions {
                request["outputDimensionality"] = d.into();
            }
            request
        })
        .collect();
    Ok(json!({"requests": requests}))
}

#[derive(Deserialize)]
struct BatchEmbedResponse {
    embeddings: Vec<ContentEmbedding>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
    values: Vec<Value>,
}

/// Gemini reports no token usage for embeddings, so `usage` is `None`.
pub fn decode_embeddings(body: &[u8], model: &str) -> Result<EmbeddingsResponse, DecodeError> {
    if let Some(err) = super::decode_error(body) {
        return Err(DecodeError::Upstream(err));
    }
    let resp: BatchEmbedResponse = serde_json::from_slice(body).map_err(DecodeError::malformed)?;
    let data = resp
        .embeddings
        .into_iter()
        .zip(0..)
        .map(|(e, index)| Embedding {
            object: "embedding".to_owned(),
            index,
            embedding: Value::Array(e.values),
        })
        .collect();
    Ok(EmbeddingsResponse {
        object: "list".to_owned(),
        data,
        model: model.to_owned(),
        usage: None,
        rest: Rest::new(),
    })
}
