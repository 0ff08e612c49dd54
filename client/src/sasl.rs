//! The client side of the SASL mechanisms, as a token exchange independent of the transport:
//! PLAIN (RFC 4616, one token) and SCRAM-SHA-256/512 (RFC 5802 through `rill_core::scram`, the
//! code the node's server side uses). [`crate::connection`] carries the tokens in
//! SaslAuthenticate requests (KIP-152).

use bytes::Bytes;
use rill_core::scram::{ScramClient, ScramError};

use crate::security::{SaslCredentials, SaslMechanism};

/// Where an exchange stands after the server's token.
pub enum Step {
    /// Send this token next.
    Send(Vec<u8>),
    /// Authenticated.
    Done,
}

/// One authentication in progress.
pub struct Exchange {
    state: State,
}

enum State {
    /// PLAIN: the one token was sent; any answer means success.
    PlainSent,
    /// SCRAM: client-first sent, waiting for server-first.
    ScramFirst(Box<ScramClient>),
    /// SCRAM: client-final sent, waiting for server-final.
    ScramFinal(Box<ScramClient>),
    /// Finished.
    Done,
}

impl Exchange {
    /// Start authenticating with `creds`: the exchange and the first token to send.
    pub fn start(creds: &SaslCredentials) -> Result<(Exchange, Vec<u8>), ScramError> {
        match creds.mechanism {
            SaslMechanism::Plain => {
                let mut token = Vec::with_capacity(creds.username.len() + creds.password.len() + 2);
                token.push(0);
                token.extend_from_slice(creds.username.as_bytes());
                token.push(0);
                token.extend_from_slice(creds.password.as_bytes());
                Ok((
                    Exchange {
                        state: State::PlainSent,
                    },
                    token,
                ))
            }
            SaslMechanism::Scram(m) => {
                let (client, first) =
                    ScramClient::start(m, &creds.username, creds.password.as_bytes())?;
                Ok((
                    Exchange {
                        state: State::ScramFirst(Box::new(client)),
                    },
                    first,
                ))
            }
        }
    }

    /// Take the server's answer to the last token.
    pub fn step(&mut self, server: &Bytes) -> Result<Step, ScramError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::PlainSent | State::Done => Ok(Step::Done),
            State::ScramFirst(mut client) => {
                let last = client.respond(server)?;
                self.state = State::ScramFinal(client);
                Ok(Step::Send(last))
            }
            State::ScramFinal(client) => {
                client.finish(server)?;
                Ok(Step::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::scram::{ClientFirst, ScramCredential, ScramMechanism, ScramServer};

    #[test]
    fn plain_token_and_scram_against_the_server_side() {
        let creds = SaslCredentials {
            mechanism: SaslMechanism::Plain,
            username: "u".into(),
            password: "p".into(),
        };
        let (mut x, token) = Exchange::start(&creds).unwrap();
        assert_eq!(token, b"\0u\0p");
        assert!(matches!(x.step(&Bytes::new()).unwrap(), Step::Done));

        let m = ScramMechanism::Sha256;
        let creds = SaslCredentials {
            mechanism: SaslMechanism::Scram(m),
            username: "alice".into(),
            password: "pw".into(),
        };
        let stored = ScramCredential::generate(m, b"pw", 4096).unwrap();
        let (mut x, first) = Exchange::start(&creds).unwrap();
        let (server, server_first) =
            ScramServer::start(m, ClientFirst::parse(&first).unwrap(), stored).unwrap();
        let Step::Send(last) = x.step(&Bytes::from(server_first)).unwrap() else {
            panic!("SCRAM needs a final message")
        };
        let server_final = server.finish(&last).unwrap();
        assert!(matches!(
            x.step(&Bytes::from(server_final)).unwrap(),
            Step::Done
        ));
    }
}
