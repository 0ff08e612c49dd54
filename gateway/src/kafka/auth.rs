//! SASL authentication of Kafka connections: the enabled mechanisms (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512) and each connection's [`Session`] state machine.
//!
//! A listener that requires SASL admits only ApiVersions, SaslHandshake and SaslAuthenticate
//! until the client has authenticated; anything else closes the connection (as Kafka does).
//! Both flows of Kafka are served: SaslHandshake v1 followed by SaslAuthenticate requests
//! (KIP-152, what librdkafka and kafka-python use), and SaslHandshake v0 followed by raw
//! length-prefixed SASL tokens. A failed authentication answers SASL_AUTHENTICATION_FAILED with a
//! message (KIP-152 flow) and closes the connection; other connections are unaffected.
//!
//! SCRAM uses the credentials of [`rill_core::credentials`]; PLAIN checks the password against the
//! same SCRAM credentials (so one `rill user add` serves every mechanism, and no password or
//! other hash is stored). SCRAM itself is [`rill_core::scram`].

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use rill_core::credentials::CredentialStore;
use rill_core::scram::{ClientFirst, ScramError, ScramMechanism, ScramServer};

/// A SASL mechanism of the Kafka listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SASL/PLAIN (RFC 4616): user name and password in clear, so only sensible over TLS.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramMechanism),
}

/// The mechanisms enabled when SASL is required without naming any.
pub const DEFAULT_MECHANISMS: [Mechanism; 2] = [
    Mechanism::Scram(ScramMechanism::Sha512),
    Mechanism::Scram(ScramMechanism::Sha256),
];

impl Mechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    /// The mechanism of a SASL name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            return Some(Mechanism::Plain);
        }
        ScramMechanism::from_name(name).map(Mechanism::Scram)
    }

    /// Parse a list of names (`SCRAM-SHA-256,PLAIN`); an empty list means the defaults.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Mechanism>, String> {
        let mut out = Vec::new();
        for n in names {
            let n = n.as_ref().trim();
            if n.is_empty() {
                continue;
            }
            let m = Mechanism::from_name(n).ok_or_else(|| {
                format!("unknown SASL mechanism {n:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
            })?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            out = DEFAULT_MECHANISMS.to_vec();
        }
        Ok(out)
    }
}

/// The listener's SASL settings and the users: one per node, shared by every connection.
#[derive(Debug)]
pub struct Authenticator {
    mechanisms: Vec<Mechanism>,
    credentials: Arc<CredentialStore>,
}

impl Authenticator {
    /// Require SASL with `mechanisms`, checking against `credentials`.
    pub fn new(mechanisms: Vec<Mechanism>, credentials: Arc<CredentialStore>) -> Authenticator {
        Authenticator {
            mechanisms,
            credentials,
        }
    }

    /// The enabled mechanisms.
    pub fn mechanisms(&self) -> &[Mechanism] {
        &self.mechanisms
    }

    /// The users.
    pub fn credentials(&self) -> &Arc<CredentialStore> {
        &self.credentials
    }
}

/// The node's authenticator over `credentials` with `mechanisms`. Warns when there is no user
/// yet (no client can connect) and when PLAIN runs without TLS.
pub fn open(
    credentials: Arc<CredentialStore>,
    mechanisms: Vec<Mechanism>,
    tls: bool,
) -> Authenticator {
    // A cluster member's users arrive with the metadata image (its store is empty until then).
    if credentials.is_empty() && !credentials.is_mirrored() {
        tracing::warn!(
            "the Kafka listener requires SASL but there are no users: stop the node and add one \
             with `rill user add NAME --data-dir DIR` (see docs/security.md)"
        );
    }
    if mechanisms.contains(&Mechanism::Plain) && !tls {
        tracing::warn!("SASL/PLAIN without TLS sends passwords in clear text");
    }
    Authenticator::new(mechanisms, credentials)
}

/// Why an authentication step failed: the Kafka error code and message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// SASL_AUTHENTICATION_FAILED (58) or ILLEGAL_SASL_STATE (34).
    pub code: i16,
    /// The message for SaslAuthenticateResponse.error_message.
    pub message: String,
}

enum State {
    /// This listener does not require SASL.
    Open,
    /// Waiting for SaslHandshake.
    Start,
    /// The mechanism is chosen; waiting for the first token.
    Handshaken { mechanism: Mechanism, raw: bool },
    /// SCRAM server-first sent; waiting for the client's final message.
    Scram { server: Box<ScramServer>, raw: bool },
    /// Done: the user is known.
    Authenticated { user: String },
    /// Refused; the connection closes.
    Failed,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The Kafka listener clients use.
    Client,
    /// The cluster listener: other nodes of the cluster, authenticated as such (replica
    /// fetches are served only here).
    Cluster,
}

/// One connection's SASL state, and the listener it came in on.
pub struct Session {
    state: State,
    auth: Option<Arc<Authenticator>>,
    close: bool,
    listener: Listener,
    /// The user name mapped from the client certificate (an SSL listener with client
    /// authentication and without SASL).
    ssl_user: Option<String>,
}

fn auth_failed(mechanism: Mechanism) -> Failure {
    Failure {
        code: ResponseError::SaslAuthenticationFailed.code(),
        message: format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            mechanism.name()
        ),
    }
}

impl Session {
    /// A new connection's session; `auth` is None when the listener does not require SASL.
    pub fn new(auth: Option<Arc<Authenticator>>) -> Session {
        Session {
            state: if auth.is_some() {
                State::Start
            } else {
                State::Open
            },
            auth,
            close: false,
            listener: Listener::Client,
            ssl_user: None,
        }
    }

    /// This session with `user` mapped from the client's certificate
    /// (`ssl.principal.mapping.rules`); a SASL user, when the listener requires SASL, wins.
    pub fn with_ssl_user(self, user: Option<String>) -> Session {
        Session {
            ssl_user: user,
            ..self
        }
    }

    /// A connection of the cluster listener, already authenticated as a node of the cluster.
    pub fn cluster_peer() -> Session {
        Session {
            listener: Listener::Cluster,
            ..Session::new(None)
        }
    }

    /// The listener this connection came in on.
    pub fn listener(&self) -> Listener {
        self.listener
    }

    /// Whether a request of `api` may be served now.
    pub fn admits(&self, api: ApiKey) -> bool {
        match self.state {
            State::Open | State::Authenticated { .. } => true,
            State::Failed => false,
            _ => matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            ),
        }
    }

    /// Whether the next frame is a raw SASL token (after SaslHandshake v0), not a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.state,
            State::Handshaken { raw: true, .. } | State::Scram { raw: true, .. }
        )
    }

    /// Whether the connection must close once the pending responses are written.
    pub fn must_close(&self) -> bool {
        self.close
    }

    /// The authenticated user.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated { user } => Some(user),
            _ => None,
        }
    }

    /// The name of the connection's principal (`User:<name>`): the SASL user once authenticated,
    /// else the client certificate's mapped name (None: `User:ANONYMOUS`).
    pub fn principal_name(&self) -> Option<&str> {
        self.user().or(self.ssl_user.as_deref())
    }

    /// Handle SaslHandshake at `version`: the error code and the enabled mechanisms.
    pub fn handshake(&mut self, mechanism: &str, version: i16) -> (i16, Vec<&'static str>) {
        let Some(auth) = &self.auth else {
            // Kafka answers so on a listener without SASL.
            return (ResponseError::IllegalSaslState.code(), Vec::new());
        };
        let enabled: Vec<&'static str> = auth.mechanisms.iter().map(|m| m.name()).collect();
        if !matches!(self.state, State::Start) {
            self.state = State::Failed;
            self.close = true;
            return (ResponseError::IllegalSaslState.code(), enabled);
        }
        match Mechanism::from_name(mechanism).filter(|m| auth.mechanisms.contains(m)) {
            Some(m) => {
                self.state = State::Handshaken {
                    mechanism: m,
                    raw: version == 0,
                };
                (0, enabled)
            }
            None => {
                self.state = State::Failed;
                self.close = true;
                (ResponseError::UnsupportedSaslMechanism.code(), enabled)
            }
        }
    }

    /// Handle one SASL token (SaslAuthenticate's auth_bytes, or a raw frame): the server's
    /// token, or why authentication failed (the session is then closed).
    pub fn authenticate(&mut self, token: &[u8]) -> Result<Vec<u8>, Failure> {
        let result = self.step(token);
        if result.is_err() {
            self.state = State::Failed;
            self.close = true;
        }
        result
    }

    fn step(&mut self, token: &[u8]) -> Result<Vec<u8>, Failure> {
        let illegal = |message: &str| Failure {
            code: ResponseError::IllegalSaslState.code(),
            message: message.to_string(),
        };
        let Some(auth) = self.auth.clone() else {
            return Err(illegal("SASL is not enabled on this listener"));
        };
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Handshaken {
                mechanism: Mechanism::Plain,
                ..
            } => {
                let user = verify_plain(&auth.credentials, token)?;
                tracing::debug!(%user, mechanism = "PLAIN", "SASL authenticated");
                self.state = State::Authenticated { user };
                Ok(Vec::new())
            }
            State::Handshaken {
                mechanism: Mechanism::Scram(m),
                raw,
            } => {
                let failed = |e: ScramError| {
                    tracing::warn!(mechanism = m.name(), error = %e, "SASL authentication failed");
                    auth_failed(Mechanism::Scram(m))
                };
                let first = ClientFirst::parse(token).map_err(failed)?;
                let Some(credential) = auth.credentials.get(&first.username, m) else {
                    tracing::warn!(user = %first.username, mechanism = m.name(),
                        "SASL authentication failed: no such user (or no credential for this mechanism)");
                    return Err(auth_failed(Mechanism::Scram(m)));
                };
                let (server, server_first) =
                    ScramServer::start(m, first, credential).map_err(failed)?;
                self.state = State::Scram {
                    server: Box::new(server),
                    raw,
                };
                Ok(server_first)
            }
            State::Scram { server, .. } => {
                let m = Mechanism::Scram(server.mechanism());
                match server.finish(token) {
                    Ok(server_final) => {
                        let user = server.username().to_string();
                        tracing::debug!(%user, mechanism = m.name(), "SASL authenticated");
                        self.state = State::Authenticated { user };
                        Ok(server_final)
                    }
                    Err(e) => {
                        tracing::warn!(user = %server.username(), mechanism = m.name(),
                            error = %e, "SASL authentication failed");
                        Err(auth_failed(m))
                    }
                }
            }
            State::Authenticated { .. } => Err(illegal("already authenticated")),
            State::Start | State::Open => Err(illegal("SaslAuthenticate before SaslHandshake")),
            State::Failed => Err(illegal("authentication already failed")),
        }
    }
}

/// Check a PLAIN token (`authzid NUL user NUL password`) against the user's SCRAM credentials.
fn verify_plain(credentials: &CredentialStore, token: &[u8]) -> Result<String, Failure> {
    let failed = Failure {
        code: ResponseError::SaslAuthenticationFailed.code(),
        message: "Authentication failed: Invalid username or password".to_string(),
    };
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        tracing::warn!(
            mechanism = "PLAIN",
            "SASL authentication failed: malformed token"
        );
        return Err(Failure {
            message: "Authentication failed: malformed PLAIN token".to_string(),
            ..failed
        });
    };
    let Ok(user) = std::str::from_utf8(user) else {
        return Err(failed);
    };
    if !authzid.is_empty() && authzid != user.as_bytes() {
        tracing::warn!(%user, mechanism = "PLAIN", "SASL authentication failed: authorization id differs");
        return Err(Failure {
            message: "Authentication failed: authorization id must be empty or the user name"
                .to_string(),
            ..failed
        });
    }
    // The strongest credential decides (all are made from the same password by `rill user add`).
    let ok = credentials
        .all_of(user)
        .last()
        .is_some_and(|(m, c)| c.verify_password(*m, password));
    if ok {
        Ok(user.to_string())
    } else {
        tracing::warn!(%user, mechanism = "PLAIN", "SASL authentication failed: invalid username or password");
        Err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::metadata::MetaStore;
    use rill_core::scram::{ScramClient, ScramCredential};

    fn store(dir: &std::path::Path) -> Arc<CredentialStore> {
        let meta = Arc::new(MetaStore::open(dir).unwrap());
        let store = CredentialStore::open(meta).unwrap();
        for m in ScramMechanism::ALL {
            store
                .upsert(
                    "alice",
                    m,
                    ScramCredential::generate(m, b"pw", 4096).unwrap(),
                )
                .unwrap();
        }
        Arc::new(store)
    }

    fn auth(dir: &std::path::Path, mechanisms: &[&str]) -> Arc<Authenticator> {
        Arc::new(Authenticator::new(
            Mechanism::parse_list(mechanisms).unwrap(),
            store(dir),
        ))
    }

    #[test]
    fn scram_session_admits_only_after_success() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path(), &[]);
        for (m, pw, ok) in [
            (ScramMechanism::Sha256, &b"pw"[..], true),
            (ScramMechanism::Sha512, b"pw", true),
            (ScramMechanism::Sha512, b"wrong", false),
        ] {
            let mut s = Session::new(Some(a.clone()));
            assert!(s.admits(ApiKey::ApiVersions));
            assert!(!s.admits(ApiKey::Metadata));
            assert_eq!(s.handshake(m.name(), 1).0, 0);
            assert!(!s.expects_raw_token());
            let (mut client, first) = ScramClient::start(m, "alice", pw).unwrap();
            let server_first = s.authenticate(&first).unwrap();
            let client_final = client.respond(&server_first).unwrap();
            match s.authenticate(&client_final) {
                Ok(server_final) => {
                    assert!(ok);
                    client.finish(&server_final).unwrap();
                    assert!(s.admits(ApiKey::Metadata));
                    assert_eq!(s.user(), Some("alice"));
                    assert!(!s.must_close());
                }
                Err(f) => {
                    assert!(!ok);
                    assert_eq!(f.code, 58);
                    assert!(f.message.contains("SCRAM-SHA-512"), "{}", f.message);
                    assert!(!s.admits(ApiKey::Metadata));
                    assert!(s.must_close());
                }
            }
        }
    }

    #[test]
    fn plain_unknown_users_and_bad_states() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path(), &["PLAIN", "SCRAM-SHA-256"]);
        let mut s = Session::new(Some(a.clone()));
        assert_eq!(s.handshake("plain", 0).0, 0);
        assert!(s.expects_raw_token());
        assert_eq!(s.authenticate(b"\0alice\0pw").unwrap(), Vec::<u8>::new());
        assert!(s.admits(ApiKey::Produce));
        // A second handshake after success is refused.
        assert_eq!(s.handshake("PLAIN", 1).0, 34);

        let mut s = Session::new(Some(a.clone()));
        s.handshake("PLAIN", 1);
        assert_eq!(s.authenticate(b"\0alice\0nope").unwrap_err().code, 58);

        // SCRAM-SHA-512 is not enabled on this listener.
        let mut s = Session::new(Some(a.clone()));
        let (code, enabled) = s.handshake("SCRAM-SHA-512", 1);
        assert_eq!(code, 33);
        assert_eq!(enabled, vec!["PLAIN", "SCRAM-SHA-256"]);
        assert!(s.must_close());

        // Unknown user, and SaslAuthenticate before SaslHandshake.
        let mut s = Session::new(Some(a.clone()));
        s.handshake("SCRAM-SHA-256", 1);
        let (_, first) = ScramClient::start(ScramMechanism::Sha256, "mallory", b"pw").unwrap();
        assert_eq!(s.authenticate(&first).unwrap_err().code, 58);
        let mut s = Session::new(Some(a));
        assert_eq!(s.authenticate(b"x").unwrap_err().code, 34);

        // Without SASL everything is admitted and SaslHandshake is an illegal state.
        let mut s = Session::new(None);
        assert!(s.admits(ApiKey::Metadata));
        assert_eq!(s.handshake("PLAIN", 1).0, 34);
        assert!(Mechanism::parse_list(&["GSSAPI"]).is_err());
        assert_eq!(
            Mechanism::parse_list::<&str>(&[]).unwrap(),
            DEFAULT_MECHANISMS.to_vec()
        );
    }
}
