//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them (KIP-84): the
//! credential derivation, the server's and the client's side of the exchange. Pure computation,
//! no I/O: the Kafka listener (`rill-gateway`) drives [`ScramServer`], the bridge drives
//! [`ScramClient`].
//!
//! As in Kafka (and librdkafka), passwords are used as their UTF-8 bytes without SASLprep, no
//! channel binding is offered (`n,,`), an authorization id must equal the user name, and the
//! delegation-token extension (`tokenauth=true`) is refused.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's lower bound of SCRAM iterations (`ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's upper bound of SCRAM iterations.
pub const MAX_ITERATIONS: u32 = 16384;
/// Length of generated salts and nonces (random bytes before base64).
const RANDOM_LEN: usize = 24;

/// A SCRAM hash function.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// The client's proof does not match the stored credential (wrong password).
    #[error("invalid credentials")]
    InvalidProof,
    /// The server's signature does not match (the server does not know the password).
    #[error("server signature mismatch: the server does not hold this user's credential")]
    ServerSignature,
    /// The server answered with `e=...`.
    #[error("server error: {0}")]
    ServerError(String),
    /// The iteration count is outside Kafka's bounds.
    #[error("iterations {0} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    /// No random bytes could be had.
    #[error("random source failed: {0}")]
    Random(String),
}

fn malformed(what: impl Into<String>) -> ScramError {
    ScramError::Malformed(what.into())
}

impl ScramMechanism {
    /// Every mechanism, strongest first.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha512, ScramMechanism::Sha256];

    /// The SASL mechanism name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name (case-insensitive).
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Kafka's `ScramMechanism` type byte (AlterUserScramCredentials): 1 = SHA-256, 2 = SHA-512.
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so new_from_slice cannot fail.
        match self {
            ScramMechanism::Sha256 => match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            ScramMechanism::Sha512 => match Hmac::<Sha512>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with HMAC of this hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What a server stores for one user and mechanism (Kafka's `ScramCredential`): never the
/// password, only what verifies a proof (StoredKey) and signs the answer (ServerKey).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScramCredential {
    /// The salt of Hi().
    pub salt: Vec<u8>,
    /// The iteration count of Hi().
    pub iterations: u32,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn random_bytes(n: usize) -> Result<Vec<u8>, ScramError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| ScramError::Random(e.to_string()))?;
    Ok(b)
}

/// Equality in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ScramCredential {
    /// The credential of `password` with a fresh random salt.
    pub fn generate(
        mechanism: ScramMechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, ScramError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let salt = random_bytes(RANDOM_LEN)?;
        Ok(ScramCredential::derive(
            mechanism, password, &salt, iterations,
        ))
    }

    /// The credential of `password` with the given salt (what Kafka's AlterUserScramCredentials
    /// calls the salted password is the `Hi()` result; see [`ScramCredential::from_salted`]).
    pub fn derive(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mechanism.salted_password(password, salt, iterations);
        ScramCredential::from_salted(mechanism, &salted, salt, iterations)
    }

    /// The credential of an already salted password.
    pub fn from_salted(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN checks passwords
    /// against the SCRAM credentials; this costs one Hi()).
    pub fn verify_password(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let derived = ScramCredential::derive(mechanism, password, &self.salt, self.iterations);
        constant_time_eq(&derived.stored_key, &self.stored_key)
    }
}

/// `saslname` decoding: `=2C` is `,` and `=3D` is `=`.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed("bad '=' escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// Splits `a=...` attributes.
fn attributes(msg: &str) -> impl Iterator<Item = (char, &str)> {
    msg.split(',').map(|part| {
        let mut chars = part.chars();
        match (chars.next(), chars.next()) {
            (Some(k), Some('=')) => (k, &part[2..]),
            _ => ('\0', part),
        }
    })
}

fn utf8(msg: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name (decoded).
    pub username: String,
    /// The client's nonce.
    pub nonce: String,
    /// The GS2 header (`n,,` or `n,a=...,`), echoed base64 in the final message.
    gs2_header: String,
    /// The message without the GS2 header.
    bare: String,
}

impl ClientFirst {
    /// Parse `gs2-header client-first-message-bare`.
    pub fn parse(msg: &[u8]) -> Result<ClientFirst, ScramError> {
        let msg = utf8(msg)?;
        let mut parts = msg.splitn(3, ',');
        let cbind = parts.next().unwrap_or_default();
        let authzid = parts.next().ok_or_else(|| malformed("no GS2 header"))?;
        let bare = parts
            .next()
            .ok_or_else(|| malformed("no client-first-message-bare"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => {
                return Err(malformed("channel binding is not supported"));
            }
            _ => return Err(malformed("bad GS2 channel binding flag")),
        }
        if bare
            .split(',')
            .any(|p| p.eq_ignore_ascii_case("tokenauth=true"))
        {
            return Err(malformed("delegation tokens are not supported"));
        }
        let mut username = None;
        let mut nonce = None;
        for (k, v) in attributes(bare) {
            match k {
                'm' => return Err(malformed("mandatory extension not supported")),
                'n' if username.is_none() => username = Some(decode_saslname(v)?),
                'r' if nonce.is_none() => nonce = Some(v.to_string()),
                _ => {} // Kafka's optional extensions (key=value) are ignored.
            }
        }
        let username = username
            .filter(|u| !u.is_empty())
            .ok_or_else(|| malformed("no user name"))?;
        let nonce = nonce
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
            .ok_or_else(|| malformed("no or invalid nonce"))?;
        if !authzid.is_empty() {
            let authzid = authzid
                .strip_prefix("a=")
                .ok_or_else(|| malformed("bad authorization id"))?;
            if decode_saslname(authzid)? != username {
                return Err(malformed("authorization id differs from the user name"));
            }
        }
        Ok(ClientFirst {
            username,
            nonce,
            gs2_header: format!("{cbind},{authzid},"),
            bare: bare.to_string(),
        })
    }
}

/// The server's side of one exchange after the client's first message.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    credential: ScramCredential,
    client_first: ClientFirst,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Answer `client_first` for a user holding `credential`; returns the server-first message.
    pub fn start(
        mechanism: ScramMechanism,
        client_first: ClientFirst,
        credential: ScramCredential,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let nonce = format!(
            "{}{}",
            client_first.nonce,
            B64.encode(random_bytes(RANDOM_LEN)?)
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let out = server_first.clone().into_bytes();
        Ok((
            ScramServer {
                mechanism,
                credential,
                client_first,
                server_first,
                nonce,
            },
            out,
        ))
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The authenticated user name (valid once [`ScramServer::finish`] succeeded).
    pub fn username(&self) -> &str {
        &self.client_first.username
    }

    /// Check the client's final message; returns the server-final message (`v=...`).
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = utf8(client_final)?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for (k, v) in attributes(without_proof) {
            match k {
                'c' if channel.is_none() => channel = Some(v),
                'r' if nonce.is_none() => nonce = Some(v),
                _ => {}
            }
        }
        let channel = channel.ok_or_else(|| malformed("no channel binding"))?;
        let expected_channel = B64.encode(self.client_first.gs2_header.as_bytes());
        if channel != expected_channel {
            return Err(malformed("channel binding differs from the GS2 header"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(malformed("nonce differs"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| malformed("proof is not base64"))?;
        let m = self.mechanism;
        let auth_message = format!(
            "{},{},{}",
            self.client_first.bare, self.server_first, without_proof
        );
        let client_signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !constant_time_eq(&m.hash(&client_key), &self.credential.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client's side of one exchange.
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: Vec<u8>,
    bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Start an exchange for `username`; returns the client-first message.
    pub fn start(
        mechanism: ScramMechanism,
        username: &str,
        password: &[u8],
    ) -> Result<(ScramClient, Vec<u8>), ScramError> {
        let nonce = B64.encode(random_bytes(RANDOM_LEN)?);
        let bare = format!("n={},r={nonce}", encode_saslname(username));
        let first = format!("n,,{bare}").into_bytes();
        Ok((
            ScramClient {
                mechanism,
                password: password.to_vec(),
                bare,
                nonce,
                server_signature: None,
            },
            first,
        ))
    }

    /// Answer the server-first message; returns the client-final message.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = utf8(server_first)?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for (k, v) in attributes(msg) {
            match k {
                'm' => return Err(malformed("mandatory extension from server")),
                'r' => nonce = Some(v),
                's' => salt = Some(v),
                'i' => iterations = Some(v),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| malformed("server sent no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(malformed("server nonce does not extend ours"));
        }
        let salt = B64
            .decode(salt.ok_or_else(|| malformed("server sent no salt"))?)
            .map_err(|_| malformed("salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or_else(|| malformed("server sent no iteration count"))?
            .parse()
            .map_err(|_| malformed("bad iteration count"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let m = self.mechanism;
        let salted = m.salted_password(&self.password, &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(b"n,,"));
        let auth_message = format!("{},{msg},{without_proof}", self.bare);
        let client_signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.server_signature = Some(m.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Check the server-final message (proves the server knows the credential).
    pub fn finish(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = utf8(server_final)?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let v = msg
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| malformed("no server signature"))?;
        let v = B64
            .decode(v)
            .map_err(|_| malformed("server signature is not base64"))?;
        match &self.server_signature {
            Some(expected) if constant_time_eq(expected, &v) => Ok(()),
            Some(_) => Err(ScramError::ServerSignature),
            None => Err(malformed("server-final before server-first")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's example (SCRAM-SHA-256, user "user", password "pencil").
    #[test]
    fn rfc7677_test_vector() {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = ScramCredential::derive(m, b"pencil", &salt, 4096);
        let client_first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let server = ScramServer {
            mechanism: m,
            credential: cred.clone(),
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            client_first,
        };
        let fin = server
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            fin,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
        assert!(cred.verify_password(m, b"pencil"));
        assert!(!cred.verify_password(m, b"pencil2"));
    }

    #[test]
    fn client_and_server_agree_for_both_hashes() {
        for m in ScramMechanism::ALL {
            let cred = ScramCredential::generate(m, b"s3cret", 4096).unwrap();
            let (mut client, first) = ScramClient::start(m, "al,i=ce", b"s3cret").unwrap();
            let parsed = ClientFirst::parse(&first).unwrap();
            assert_eq!(parsed.username, "al,i=ce");
            let (server, server_first) = ScramServer::start(m, parsed, cred.clone()).unwrap();
            let client_final = client.respond(&server_first).unwrap();
            let server_final = server.finish(&client_final).unwrap();
            client.finish(&server_final).unwrap();

            // Wrong password: the server refuses the proof.
            let (mut bad, first) = ScramClient::start(m, "alice", b"nope").unwrap();
            let (server, sf) =
                ScramServer::start(m, ClientFirst::parse(&first).unwrap(), cred.clone()).unwrap();
            let cf = bad.respond(&sf).unwrap();
            assert_eq!(server.finish(&cf), Err(ScramError::InvalidProof));
            // A server that does not know the password cannot fake the final message.
            assert_eq!(client.finish(b"v=AAAA"), Err(ScramError::ServerSignature));
        }
    }

    #[test]
    fn rejects_malformed_client_messages() {
        for bad in [
            &b"p=tls-unique,,n=u,r=abc"[..],
            b"n,,r=abc",
            b"n,,n=u",
            b"x,,n=u,r=abc",
            b"n,a=other,n=u,r=abc",
            b"n,,n=u=zz,r=abc",
            b"n,,n=u,r=abc,tokenauth=true",
            b"\xff\xfe",
            b"",
        ] {
            assert!(ClientFirst::parse(bad).is_err(), "{:?}", bad);
        }
        let ok = ClientFirst::parse(b"n,a=u,n=u,r=abc,ext=1").unwrap();
        assert_eq!(ok.username, "u");
        assert_eq!(ok.gs2_header, "n,a=u,");
    }

    #[test]
    fn iteration_bounds() {
        assert_eq!(
            ScramCredential::generate(ScramMechanism::Sha256, b"p", 100),
            Err(ScramError::Iterations(100))
        );
        assert_eq!(
            ScramMechanism::from_name("scram-sha-512"),
            Some(ScramMechanism::Sha512)
        );
        assert_eq!(ScramMechanism::from_name("PLAIN"), None);
    }
}
