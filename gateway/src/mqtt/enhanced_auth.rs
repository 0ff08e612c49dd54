//! MQTT 5 enhanced authentication (§4.12) with SCRAM-SHA-256 (RFC 5802, RFC 7677) as the
//! authentication method; the SCRAM computation is [`rill_core::scram`].
//!
//! At CONNECT: the Authentication Method is `SCRAM-SHA-256` and the Authentication Data the
//! client-first message; the server answers AUTH 0x18 with the server-first message, the client
//! AUTH 0x18 with the client-final message, and CONNACK carries the server-final message
//! (`v=...`) as Authentication Data. A wrong proof gets CONNACK 0x87 (Not authorized), another
//! method CONNACK 0x8C (Bad authentication method). Re-authentication (§4.12.1) is the same
//! exchange started by AUTH 0x19 on a connected session, ended by AUTH 0x00 with the
//! server-final message; a failure disconnects with 0x87. The verifiers are those
//! `rill device add` stores beside the argon2 hash ([`super::auth`]).

use rill_core::scram::{ClientFirst, ScramMechanism, ScramServer};

use super::auth::CredentialStore;

/// The one authentication method served.
pub const METHOD: &str = "SCRAM-SHA-256";

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// Not a method this server knows (CONNACK 0x8C).
    #[error("authentication method {0:?} is not supported (only SCRAM-SHA-256)")]
    UnknownMethod(String),
    /// Wrong proof, unknown user, malformed SCRAM message (0x87).
    #[error("{0}")]
    Refused(String),
}

/// A SCRAM exchange after the server-first message.
pub struct Exchange {
    scram: ScramServer,
}

/// Starts an exchange for `method` with the client-first message `data`; returns the
/// server-first message to send. CPU-light, but reads the credential file: call from a
/// blocking task.
pub fn begin(
    store: &CredentialStore,
    method: &str,
    data: &[u8],
) -> Result<(Exchange, Vec<u8>), AuthFailure> {
    if method != METHOD {
        return Err(AuthFailure::UnknownMethod(method.to_string()));
    }
    let first = ClientFirst::parse(data).map_err(|e| AuthFailure::Refused(e.to_string()))?;
    let credential = store
        .scram(&first.username)
        .map_err(|e| AuthFailure::Refused(format!("credential store: {e}")))?
        .ok_or_else(|| {
            AuthFailure::Refused(format!(
                "no SCRAM-SHA-256 credential for {:?}",
                first.username
            ))
        })?;
    let (scram, server_first) = ScramServer::start(ScramMechanism::Sha256, first, credential)
        .map_err(|e| AuthFailure::Refused(e.to_string()))?;
    Ok((Exchange { scram }, server_first))
}

impl Exchange {
    /// Checks the client-final message; returns the authenticated user name and the
    /// server-final message.
    pub fn finish(&self, client_final: &[u8]) -> Result<(String, Vec<u8>), AuthFailure> {
        let server_final = self
            .scram
            .finish(client_final)
            .map_err(|e| AuthFailure::Refused(e.to_string()))?;
        Ok((self.scram.username().to_string(), server_final))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::scram::ScramClient;

    #[test]
    fn scram_sha_256_exchange_with_stored_verifiers() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("creds"));
        store.add("dev1", "pw").unwrap();
        assert!(matches!(
            begin(&store, "SCRAM-SHA-1", b"n,,n=dev1,r=abc"),
            Err(AuthFailure::UnknownMethod(_))
        ));
        for (password, ok) in [("pw", true), ("wrong", false)] {
            let (mut client, first) =
                ScramClient::start(ScramMechanism::Sha256, "dev1", password.as_bytes()).unwrap();
            let (exchange, server_first) = begin(&store, METHOD, &first).unwrap();
            let client_final = client.respond(&server_first).unwrap();
            match exchange.finish(&client_final) {
                Ok((user, server_final)) => {
                    assert!(ok);
                    assert_eq!(user, "dev1");
                    client.finish(&server_final).unwrap();
                }
                Err(AuthFailure::Refused(_)) => assert!(!ok),
                Err(e) => panic!("{e}"),
            }
        }
        let (_, first) = ScramClient::start(ScramMechanism::Sha256, "nobody", b"x").unwrap();
        assert!(matches!(
            begin(&store, METHOD, &first),
            Err(AuthFailure::Refused(_))
        ));
    }
}
