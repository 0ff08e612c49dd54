//! Bearer tokens of the admin HTTP API (`[admin] tokens_file`): who may call which endpoint.
//!
//! The file holds one token a line as `scope:sha256-hex`, the scope `read` (GET endpoints such
//! as `/metrics` and `/bridge/status`) or `admin` (everything, including future write
//! endpoints); `#` starts a comment. Only the SHA-256 of a token is stored, so the file reveals
//! no token. Make a line with `printf '%s' "$TOKEN" | sha256sum`. A client sends
//! `Authorization: Bearer <token>`. `/health` never needs a token.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read-only endpoints.
    Read,
    /// Every endpoint.
    Admin,
}

impl Scope {
    /// The scope's name in the tokens file.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Whether a token of this scope may call an endpoint that needs `needed`.
    pub fn covers(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// Why the tokens file cannot be used (the node refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error("admin tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `scope:sha256-hex`.
    #[error("admin tokens file {path}, line {line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No token at all (an empty file would lock every client out).
    #[error("admin tokens file {0} holds no token")]
    Empty(PathBuf),
}

/// The tokens of the admin API.
#[derive(Debug, Clone)]
pub struct AdminTokens {
    entries: Vec<(Scope, [u8; 32])>,
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Compare two digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminTokens {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<AdminTokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse file contents (`path` for messages only).
    pub fn parse(text: &str, path: &Path) -> Result<AdminTokens, TokensError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| TokensError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let Some((scope, hash)) = line.split_once(':') else {
                return Err(bad("expected scope:sha256-hex".to_string()));
            };
            let scope = match scope.trim() {
                "read" => Scope::Read,
                "admin" => Scope::Admin,
                other => return Err(bad(format!("unknown scope {other:?} (read or admin)"))),
            };
            let digest = parse_hex32(&hash.trim().to_ascii_lowercase()).ok_or_else(|| {
                bad("the hash must be 64 hex digits (the token's SHA-256)".to_string())
            })?;
            entries.push((scope, digest));
        }
        if entries.is_empty() {
            return Err(TokensError::Empty(path.to_path_buf()));
        }
        Ok(AdminTokens { entries })
    }

    /// The scope of `token` (the widest if it is listed twice), or `None` if it is unknown.
    pub fn scope_of(&self, token: &str) -> Option<Scope> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.entries
            .iter()
            .filter(|(_, d)| same(d, &digest))
            .map(|(s, _)| *s)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(token: &str) -> String {
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn scopes_of_listed_tokens() {
        let text = format!(
            "# prometheus\nread:{}\n\nadmin:{}   # ops\n",
            hex("scrape-me"),
            hex("root").to_uppercase()
        );
        let t = AdminTokens::parse(&text, Path::new("t")).unwrap();
        assert_eq!(t.scope_of("scrape-me"), Some(Scope::Read));
        assert_eq!(t.scope_of("root"), Some(Scope::Admin));
        assert_eq!(t.scope_of("guess"), None);
        assert!(Scope::Admin.covers(Scope::Read));
        assert!(!Scope::Read.covers(Scope::Admin));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = AdminTokens::parse("read:abc\n", Path::new("t")).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err =
            AdminTokens::parse(&format!("\nwrite:{}\n", hex("x")), Path::new("t")).unwrap_err();
        assert!(err.to_string().contains("line 2") && err.to_string().contains("write"));
        assert!(matches!(
            AdminTokens::parse("# nothing\n", Path::new("t")),
            Err(TokensError::Empty(_))
        ));
    }
}
