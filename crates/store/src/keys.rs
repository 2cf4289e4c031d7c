//! API keys managed at run time. The secret (`sk-sluice-…`) is shown once at creation and
//! stored only as its SHA-256; the gateway keeps every key in memory and refreshes from
//! [`Store::keys_changed_since`], so a revocation reaches every instance within the
//! refresh interval without a query per request.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// Limits and budgets a key carries (enforced by the limits issue). `None` = no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub budget_usd_day_nanos: Option<i64>,
    pub budget_usd_month_nanos: Option<i64>,
    pub budget_usd_total_nanos: Option<i64>,
    pub budget_tokens_day: Option<i64>,
    pub budget_tokens_month: Option<i64>,
}

/// A stored key, as listed and shown (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// `sk-sluice-` and the first characters of the secret, to recognise it.
    pub key_prefix: String,
    #[serde(skip)]
    pub key_hash: String,
    pub user_id: Option<String>,
    pub allowed_models: Option<Vec<String>>,
    pub limits: KeyLimits,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl ApiKey {
    /// Whether the key may be used at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| e > now_ms)
    }
}

/// A freshly generated secret: shown once, then only its hash is kept.
pub struct NewSecret {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

impl NewSecret {
    /// `sk-sluice-` and 40 base62 characters drawn from the OS random generator (over
    /// 230 bits, the small modulo bias included).
    pub fn generate() -> NewSecret {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut bytes = [0u8; 40];
        fill_random(&mut bytes);
        let body: String = bytes
            .iter()
            .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
            .collect();
        let secret = format!("sk-sluice-{body}");
        NewSecret {
            hash: hash_secret(&secret),
            prefix: secret[..14].to_owned(),
            secret,
        }
    }
}

/// Random bytes from the OS (UUIDv4 draws on getrandom), with no extra dependency.
fn fill_random(out: &mut [u8]) {
    for chunk in out.chunks_mut(16) {
        let id = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&id.as_bytes()[..chunk.len()]);
    }
}

/// The stored form of a secret: lowercase hex SHA-256. The gateway hashes a presented
/// bearer token the same way to find its key.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const COLUMNS: &str = "id, name, key_hash, key_prefix, user_id, allowed_models, rpm_limit, tpm_limit, \
    budget_usd_day_nanos, budget_usd_month_nanos, budget_usd_total_nanos, budget_tokens_day, \
    budget_tokens_month, created_at_ms, updated_at_ms, expires_at_ms, revoked_at_ms";

fn from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let models: Option<String> = row.try_get("allowed_models")?;
    let allowed_models = models
        .map(|m| serde_json::from_str(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("api_keys.allowed_models: {e}")))?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        key_hash: row.try_get("key_hash")?,
        user_id: row.try_get("user_id")?,
        allowed_models,
        limits: KeyLimits {
            rpm: row.try_get("rpm_limit")?,
            tpm: row.try_get("tpm_limit")?,
            budget_usd_day_nanos: row.try_get("budget_usd_day_nanos")?,
            budget_usd_month_nanos: row.try_get("budget_usd_month_nanos")?,
            budget_usd_total_nanos: row.try_get("budget_usd_total_nanos")?,
            budget_tokens_day: row.try_get("budget_tokens_day")?,
            budget_tokens_month: row.try_get("budget_tokens_month")?,
        },
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

impl Store {
    /// Inserts a key as given (id, hash and times made by the caller).
    pub async fn insert_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        let models = k
            .allowed_models
            .as_ref()
            .map(|m| serde_json::Value::from(m.clone()).to_string());
        let sql = format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&k.id)
            .bind(&k.name)
            .bind(&k.key_hash)
            .bind(&k.key_prefix)
            .bind(&k.user_id)
            .bind(models)
            .bind(k.limits.rpm)
            .bind(k.limits.tpm)
            .bind(k.limits.budget_usd_day_nanos)
            .bind(k.limits.budget_usd_month_nanos)
            .bind(k.limits.budget_usd_total_nanos)
            .bind(k.limits.budget_tokens_day)
            .bind(k.limits.budget_tokens_month)
            .bind(k.created_at_ms)
            .bind(k.updated_at_ms)
            .bind(k.expires_at_ms)
            .bind(k.revoked_at_ms)
            .execute(&*self.pool())
            .await?;
        Ok(())
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at_ms, id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&*self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&*self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Keys created, changed or revoked at or after `since_ms`, for the in-memory refresh.
    pub async fn keys_changed_since(&self, since_ms: i64) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE updated_at_ms >= $1 ORDER BY updated_at_ms"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since_ms)
            .fetch_all(&*self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Marks a key revoked. `false` when there is no such key or it was already revoked.
    pub async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1, updated_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// What a caller asks for when issuing a key (admin API body, `sluice keys create`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub name: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    #[serde(default)]
    pub limits: KeyLimits,
}

/// Whether text holds a character that must not reach a log line, a terminal or a
/// database as it is: control characters (newlines, NUL, escapes), the Unicode line and
/// paragraph separators, and the direction marks, overrides and isolates that make text
/// display as something it is not.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| {
        c.is_control()
            || matches!(
                c,
                '\u{200E}'
                    | '\u{200F}'
                    | '\u{061C}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}'
            )
    })
}

impl KeySpec {
    /// Every problem with the spec, each naming its field.
    pub fn problems(&self, now_ms: i64) -> Vec<String> {
        let mut p = Vec::new();
        let texts = std::iter::once(("name", Some(self.name.as_str())))
            .chain(std::iter::once(("user_id", self.user_id.as_deref())))
            .chain(
                self.allowed_models
                    .iter()
                    .flatten()
                    .map(|m| ("allowed_models", Some(m.as_str()))),
            );
        for (field, text) in texts {
            if text.is_some_and(has_control_chars)
                && !p.iter().any(|x: &String| x.starts_with(field))
            {
                p.push(format!(
                    "{field}: must not contain control characters (newlines, NUL, escapes, \
                     text-direction overrides)"
                ));
            }
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            p.push("name: must be 1 to 200 characters".to_owned());
        }
        if self.user_id.as_ref().is_some_and(|u| u.trim().is_empty()) {
            p.push("user_id: must not be empty when given".to_owned());
        }
        if let Some(models) = &self.allowed_models {
            if models.is_empty() {
                p.push(
                    "allowed_models: an empty list would allow nothing; omit it to allow all"
                        .to_owned(),
                );
            }
            if models.iter().any(|m| m.trim().is_empty()) {
                p.push("allowed_models: names must not be empty".to_owned());
            }
        }
        if self.expires_at_ms.is_some_and(|e| e <= now_ms) {
            p.push("expires_at_ms: must be in the future".to_owned());
        }
        let l = &self.limits;
        for (field, v) in [
            ("limits.rpm", l.rpm),
            ("limits.tpm", l.tpm),
            ("limits.budget_usd_day_nanos", l.budget_usd_day_nanos),
            ("limits.budget_usd_month_nanos", l.budget_usd_month_nanos),
            ("limits.budget_usd_total_nanos", l.budget_usd_total_nanos),
            ("limits.budget_tokens_day", l.budget_tokens_day),
            ("limits.budget_tokens_month", l.budget_tokens_month),
        ] {
            if v.is_some_and(|v| v < 0) {
                p.push(format!("{field}: must not be negative"));
            }
        }
        p
    }

    /// A new key for this spec: a fresh secret (returned once) and the record to store.
    pub fn issue(self, now_ms: i64) -> (String, ApiKey) {
        let secret = NewSecret::generate();
        let key = ApiKey {
            id: format!("key_{}", uuid::Uuid::now_v7().simple()),
            name: self.name,
            key_prefix: secret.prefix,
            key_hash: secret.hash,
            user_id: self.user_id,
            allowed_models: self.allowed_models,
            limits: self.limits,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: None,
        };
        (secret.secret, key)
    }
}

/// `30d`, `12h`, `90m`, `45s` as milliseconds; `None` for anything else.
pub fn parse_span(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()]
        .parse()
        .ok()
        .filter(|n| *n > 0)?;
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse() {
        assert_eq!(parse_span("30d"), Some(30 * 86_400_000));
        assert_eq!(parse_span("12h"), Some(12 * 3_600_000));
        assert_eq!(parse_span("0d"), None);
        assert_eq!(parse_span("-1d"), None);
        assert_eq!(parse_span("7"), None);
        assert_eq!(parse_span("d"), None);
        assert_eq!(parse_span("9999999999999999d"), None);
    }

    #[test]
    fn spec_problems_name_their_fields() {
        let spec = KeySpec {
            name: " ".into(),
            allowed_models: Some(vec![]),
            expires_at_ms: Some(5),
            limits: KeyLimits {
                budget_usd_day_nanos: Some(-1),
                ..KeyLimits::default()
            },
            ..KeySpec::default()
        };
        let p = spec.problems(10).join("\n");
        for field in [
            "name",
            "allowed_models",
            "expires_at_ms",
            "limits.budget_usd_day_nanos",
        ] {
            assert!(p.contains(field), "{field} in {p}");
        }
    }
}
