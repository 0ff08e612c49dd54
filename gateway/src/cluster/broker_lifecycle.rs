//! The broker side of Kafka's BrokerLifecycleManager: register with the active controller under
//! a random incarnation id per process start (BrokerRegistration), heartbeat every
//! `broker_heartbeat_interval_ms` (BrokerHeartbeat, carrying how far this node applied the
//! metadata log), find the active controller again from Raft metrics when it changes or stops
//! answering, re-register when the controller says the broker epoch is stale, and on shutdown
//! ask for a controlled shutdown (`want_shut_down`) so leadership moves away before the process
//! exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId, BrokerRegistrationRequest,
    BrokerRegistrationResponse,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::controller::Endpoint;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::controller::Controller;
use super::peer::PeerClient;

/// BrokerRegistration version sent.
const REGISTRATION_VERSION: i16 = 1;
/// BrokerHeartbeat version sent.
const HEARTBEAT_VERSION: i16 = 0;
/// How long a controlled shutdown may take before the process exits anyway.
pub const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the lifecycle manager knows of this broker's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokerState {
    /// The broker epoch of the current registration.
    pub broker_epoch: Option<i64>,
    /// Whether the controller last said this broker is fenced.
    pub fenced: bool,
}

/// Registers and heartbeats this broker.
pub struct BrokerLifecycle {
    controller: Arc<Controller>,
    listeners: Vec<Endpoint>,
    rack: Option<String>,
    interval: Duration,
    state: watch::Sender<BrokerState>,
}

fn protocol_code(name: &str) -> i16 {
    match name {
        "SSL" => 1,
        "SASL_PLAINTEXT" => 2,
        "SASL_SSL" => 3,
        _ => 0,
    }
}

enum Beat {
    Ok(BrokerHeartbeatResponse),
    /// Register again (stale epoch).
    Reregister,
    /// Find the controller again.
    Retry(String),
}

impl BrokerLifecycle {
    /// A lifecycle manager for this node, advertising `listeners`.
    pub fn new(
        controller: Arc<Controller>,
        listeners: Vec<Endpoint>,
        rack: Option<String>,
        interval: Duration,
    ) -> Arc<BrokerLifecycle> {
        Arc::new(BrokerLifecycle {
            controller,
            listeners,
            rack,
            interval,
            state: watch::channel(BrokerState::default()).0,
        })
    }

    /// The registration state (changes as the controller answers).
    pub fn state(&self) -> watch::Receiver<BrokerState> {
        self.state.subscribe()
    }

    fn controller_client(&self) -> Option<Arc<PeerClient>> {
        let leader = self.controller.leader()?;
        let addr = self.controller.address_of(leader)?;
        Some(
            self.controller
                .peers
                .client(&self.controller.identity, &addr),
        )
    }

    /// How long a registration or heartbeat may take: two heartbeat intervals (at least 1 s).
    /// A controller that stopped without closing its connections (SIGSTOP, a hung host) must not
    /// hold the broker's heartbeats past its session timeout, or the next active controller,
    /// which starts every broker's session afresh, fences this broker too.
    fn rpc_timeout(&self) -> Duration {
        (self.interval * 2).max(Duration::from_secs(1))
    }

    fn applied_offset(&self) -> i64 {
        self.controller
            .sm
            .last_applied()
            .map_or(-1, |l| i64::try_from(l.index).unwrap_or(i64::MAX))
    }

    async fn register(&self) -> Result<i64, String> {
        let client = self
            .controller_client()
            .ok_or_else(|| "no active controller is known".to_string())?;
        let id = &self.controller.identity;
        let req = BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(id.node_id))
            .with_cluster_id(StrBytes::from_string(id.cluster_id.clone()))
            .with_incarnation_id(id.incarnation)
            .with_listeners(
                self.listeners
                    .iter()
                    .map(|e| {
                        Listener::default()
                            .with_name(StrBytes::from_string(e.name.clone()))
                            .with_host(StrBytes::from_string(e.host.clone()))
                            .with_port(e.port)
                            .with_security_protocol(protocol_code(&e.security_protocol))
                    })
                    .collect(),
            )
            .with_rack(self.rack.clone().map(StrBytes::from_string));
        let resp: BrokerRegistrationResponse = tokio::time::timeout(
            self.rpc_timeout(),
            client.kafka(ApiKey::BrokerRegistration, REGISTRATION_VERSION, &req),
        )
        .await
        .map_err(|_| format!("{} did not answer in time", client.addr()))?
        .map_err(|e| e.to_string())?;
        if resp.error_code != 0 {
            let name = ResponseError::try_from_code(resp.error_code)
                .map_or_else(|| resp.error_code.to_string(), |e| format!("{e:?}"));
            return Err(format!("{} answered {name}", client.addr()));
        }
        Ok(resp.broker_epoch)
    }

    async fn heartbeat(&self, broker_epoch: i64, want_shut_down: bool) -> Beat {
        let Some(client) = self.controller_client() else {
            return Beat::Retry("no active controller is known".into());
        };
        let req = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(self.controller.identity.node_id))
            .with_broker_epoch(broker_epoch)
            .with_current_metadata_offset(self.applied_offset())
            .with_want_fence(false)
            .with_want_shut_down(want_shut_down);
        let call = client.kafka::<_, BrokerHeartbeatResponse>(
            ApiKey::BrokerHeartbeat,
            HEARTBEAT_VERSION,
            &req,
        );
        let Ok(answer) = tokio::time::timeout(self.rpc_timeout(), call).await else {
            return Beat::Retry(format!("{} did not answer in time", client.addr()));
        };
        match answer {
            Err(e) => Beat::Retry(e.to_string()),
            Ok(r) if r.error_code == ResponseError::StaleBrokerEpoch.code() => Beat::Reregister,
            Ok(r) if r.error_code != 0 => {
                Beat::Retry(format!("{} answered error {}", client.addr(), r.error_code))
            }
            Ok(r) => Beat::Ok(r),
        }
    }

    /// Registers, then heartbeats until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut metrics = self.controller.raft.metrics();
        let mut epoch: Option<i64> = None;
        let mut last_error_logged: Option<Instant> = None;
        loop {
            let wait = match epoch {
                None => match self.register().await {
                    Ok(e) => {
                        tracing::info!(broker_epoch = e, incarnation = %self.controller.identity.incarnation, "registered with the active controller");
                        epoch = Some(e);
                        self.state.send_replace(BrokerState {
                            broker_epoch: Some(e),
                            fenced: true,
                        });
                        Duration::ZERO
                    }
                    Err(reason) => {
                        if last_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            tracing::info!(%reason, "broker registration pending");
                            last_error_logged = Some(Instant::now());
                        }
                        Duration::from_millis(250)
                    }
                },
                Some(e) => match self.heartbeat(e, false).await {
                    Beat::Ok(r) => {
                        let was = *self.state.borrow();
                        if was.fenced != r.is_fenced {
                            tracing::info!(
                                broker_epoch = e,
                                fenced = r.is_fenced,
                                "broker {}",
                                if r.is_fenced { "fenced" } else { "unfenced" }
                            );
                        }
                        self.state.send_replace(BrokerState {
                            broker_epoch: Some(e),
                            fenced: r.is_fenced,
                        });
                        // Heartbeat soon again while waiting to be unfenced.
                        if r.is_fenced {
                            Duration::from_millis(200).min(self.interval)
                        } else {
                            self.interval
                        }
                    }
                    Beat::Reregister => {
                        tracing::info!(
                            broker_epoch = e,
                            "broker epoch is stale; registering again"
                        );
                        epoch = None;
                        Duration::ZERO
                    }
                    Beat::Retry(reason) => {
                        tracing::debug!(%reason, "heartbeat failed; retrying");
                        Duration::from_millis(200)
                    }
                },
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                // A new active controller: talk to it now.
                _ = metrics.changed(), if wait > Duration::from_millis(200) => {}
            }
        }
    }

    /// Asks for a controlled shutdown and waits until the controller moved leadership away (or
    /// [`CONTROLLED_SHUTDOWN_TIMEOUT`]).
    pub async fn controlled_shutdown(&self) {
        let Some(epoch) = self.state.borrow().broker_epoch else {
            return;
        };
        let deadline = Instant::now() + CONTROLLED_SHUTDOWN_TIMEOUT;
        tracing::info!(
            broker_epoch = epoch,
            "controlled shutdown: moving leadership away"
        );
        while Instant::now() < deadline {
            match self.heartbeat(epoch, true).await {
                Beat::Ok(r) if r.should_shut_down => {
                    tracing::info!("controlled shutdown complete");
                    return;
                }
                Beat::Reregister => return,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        tracing::warn!("controlled shutdown did not complete in time; stopping anyway");
    }
}
