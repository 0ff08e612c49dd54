//! Sequences of the whole coordinator, with time moved by a [`ManualClock`].

use super::*;
use bytes::Bytes;
use std::cell::Cell;
use std::ops::Deref;
use std::time::Duration;

use crate::clock::ManualClock;
use crate::metadata::MetaStore;

const SESSION: u64 = 10_000;
const REBALANCE: u64 = 30_000;

/// A coordinator on a [`ManualClock`]. Each call first moves the clock forward (with
/// [`ManualClock::advance`]) to the moment given, in ms since the test's clock was made.
struct Timed {
    c: GroupCoordinator,
    clock: Arc<ManualClock>,
    elapsed_ms: Cell<u64>,
}

impl Deref for Timed {
    type Target = GroupCoordinator;
    fn deref(&self) -> &GroupCoordinator {
        &self.c
    }
}

impl Timed {
    fn new(config: GroupConfig, store: RedbOffsetStore) -> Timed {
        let clock = Arc::new(ManualClock::new());
        Timed {
            c: GroupCoordinator::new(config, Arc::new(store), clock.clone()),
            clock,
            elapsed_ms: Cell::new(0),
        }
    }

    fn at(&self, ms: u64) {
        let now = self.elapsed_ms.get();
        assert!(ms >= now, "test time goes forward only ({ms} < {now})");
        self.clock.advance(Duration::from_millis(ms - now));
        self.elapsed_ms.set(ms);
    }

    fn join_group(&self, req: JoinRequest, now: u64) -> oneshot::Receiver<JoinResponse> {
        self.at(now);
        self.c.join_group(req)
    }

    fn sync_group(&self, req: SyncRequest, now: u64) -> oneshot::Receiver<SyncResponse> {
        self.at(now);
        self.c.sync_group(req)
    }

    fn heartbeat(&self, req: &HeartbeatRequest, now: u64) -> Result<(), GroupError> {
        self.at(now);
        self.c.heartbeat(req)
    }

    fn leave_group(
        &self,
        group_id: &str,
        members: &[LeavingMember],
        now: u64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.at(now);
        self.c.leave_group(group_id, members)
    }

    fn tick(&self, now: u64) {
        self.at(now);
        self.c.tick();
    }

    fn commit_offsets(
        &self,
        req: &OffsetCommitRequest,
        now: u64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.at(now);
        self.c.commit_offsets(req)
    }

    fn consumer_group_heartbeat(
        &self,
        req: &ConsumerHeartbeatRequest,
        resolve: &dyn Fn(&str) -> Option<(uuid::Uuid, i32)>,
        now: u64,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        self.at(now);
        self.c.consumer_group_heartbeat(req, resolve)
    }
}

fn coordinator_with(config: GroupConfig) -> Timed {
    let store = RedbOffsetStore::open(Arc::new(MetaStore::in_memory().unwrap())).unwrap();
    Timed::new(config, store)
}

/// No initial delay, so joins complete as soon as everyone is in.
fn coordinator() -> Timed {
    coordinator_with(GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    })
}

fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("response should be ready")
}

fn pending<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<T>) {
    assert!(
        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "response should still be pending"
    );
}

fn hb(c: &Timed, member: &str, generation: i32, now: u64) -> Result<(), GroupError> {
    c.heartbeat(
        &HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
        },
        now,
    )
}

fn sync(
    c: &Timed,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
    now: u64,
) -> oneshot::Receiver<SyncResponse> {
    c.sync_group(
        SyncRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments,
        },
        now,
    )
}

fn state(c: &Timed) -> ClassicGroupStateName {
    c.describe_group("g").unwrap().state
}

/// One member joins (old-style, no two-step) and forms generation 1 alone.
/// [`single_stable_member`] `a`, then a second member `b` joins and `a` rejoins at `now`:
/// both have their generation-2 JoinGroup answers, neither has synced. Returns `(a, b)`.
fn second_member_joined(c: &Timed, now: u64) -> (String, String) {
    let a = single_stable_member(c);
    let mut b = c.join_group(join_req("", &["range"]), now);
    let mut a2 = c.join_group(join_req(&a, &["range"]), now);
    let rb = ready(&mut b);
    ready(&mut a2);
    (a, rb.member_id)
}

/// [`second_member_joined`], then both sync generation 2 (empty assignments) at `now`.
fn two_stable_members(c: &Timed, now: u64) -> (String, String) {
    let (a, b) = second_member_joined(c, now);
    ready(&mut sync(c, &a, 2, vec![], now));
    ready(&mut sync(c, &b, 2, vec![], now));
    (a, b)
}

fn single_stable_member(c: &Timed) -> String {
    let mut rx = c.join_group(join_req("", &["range"]), 0);
    let r = ready(&mut rx);
    assert_eq!(r.error, None);
    let mut s = sync(
        c,
        &r.member_id,
        1,
        vec![(r.member_id.clone(), Bytes::from("a1"))],
        0,
    );
    assert_eq!(ready(&mut s).assignment, Bytes::from("a1"));
    r.member_id
}

#[test]
fn two_step_join_then_sync_makes_group_stable() {
    let c = coordinator();
    let mut req = join_req("", &["range", "roundrobin"]);
    req.require_known_member_id = true;
    let mut rx = c.join_group(req.clone(), 0);
    let first = ready(&mut rx);
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-"));
    // Until the member rejoins, it is only pending: heartbeats do not know it.
    assert_eq!(
        hb(&c, &first.member_id, 0, 1),
        Err(GroupError::UnknownMemberId)
    );

    req.member_id = first.member_id.clone();
    let mut rx = c.join_group(req, 10);
    let joined = ready(&mut rx);
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, first.member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, Bytes::from("meta-range"));
    assert_eq!(state(&c), ClassicGroupStateName::CompletingRebalance);
    // Heartbeats during CompletingRebalance are fine.
    assert_eq!(hb(&c, &joined.member_id, 1, 20), Ok(()));

    let mut s = sync(
        &c,
        &joined.member_id,
        1,
        vec![(joined.member_id.clone(), Bytes::from("x"))],
        30,
    );
    let s = ready(&mut s);
    assert_eq!(s.error, None);
    assert_eq!(s.assignment, Bytes::from("x"));
    assert_eq!(s.protocol_name.as_deref(), Some("range"));
    assert_eq!(state(&c), ClassicGroupStateName::Stable);
    assert_eq!(hb(&c, &joined.member_id, 1, 40), Ok(()));
    assert_eq!(
        hb(&c, &joined.member_id, 0, 40),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(hb(&c, "nobody", 1, 40), Err(GroupError::UnknownMemberId));
}

#[test]
fn initial_rebalance_delay_waits_and_extends_while_members_arrive() {
    let c = coordinator_with(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..GroupConfig::default()
    });
    let mut a = c.join_group(join_req("", &["range"]), 0);
    let mut b = c.join_group(join_req("", &["range"]), 1_000);
    c.tick(2_999);
    pending(&mut a);
    // b arrived during the first window: the delay is extended once more.
    c.tick(3_000);
    pending(&mut a);
    let mut d = c.join_group(join_req("", &["range"]), 4_000);
    c.tick(5_999);
    pending(&mut d);
    c.tick(6_000);
    pending(&mut a);
    c.tick(9_000);
    let (ra, rb, rd) = (ready(&mut a), ready(&mut b), ready(&mut d));
    for r in [&ra, &rb, &rd] {
        assert_eq!(r.error, None);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader, ra.member_id);
    }
    assert_eq!(ra.members.len(), 3);
    assert!(rb.members.is_empty() && rd.members.is_empty());
}

#[test]
fn followers_wait_for_leader_assignment() {
    let c = coordinator_with(GroupConfig {
        initial_rebalance_delay_ms: 100,
        ..GroupConfig::default()
    });
    let mut a = c.join_group(join_req("", &["range"]), 0);
    let mut b = c.join_group(join_req("", &["range"]), 0);
    c.tick(100);
    c.tick(200);
    let (ra, rb) = (ready(&mut a), ready(&mut b));
    let mut sb = sync(&c, &rb.member_id, 1, vec![], 300);
    pending(&mut sb);
    let mut sa = sync(
        &c,
        &ra.member_id,
        1,
        vec![
            (ra.member_id.clone(), Bytes::from("pa")),
            (rb.member_id.clone(), Bytes::from("pb")),
        ],
        400,
    );
    assert_eq!(ready(&mut sa).assignment, Bytes::from("pa"));
    assert_eq!(ready(&mut sb).assignment, Bytes::from("pb"));
    // A follower that syncs again in Stable gets its stored assignment.
    let mut again = sync(&c, &rb.member_id, 1, vec![], 500);
    assert_eq!(ready(&mut again).assignment, Bytes::from("pb"));
    let d = c.describe_group("g").unwrap();
    assert_eq!(d.state, ClassicGroupStateName::Stable);
    assert_eq!(d.protocol, "range");
    assert_eq!(d.members.len(), 2);
    assert_eq!(d.members[1].assignment, Bytes::from("pb"));
}

#[test]
fn new_member_triggers_rebalance_and_completes_when_all_rejoined() {
    let c = coordinator();
    let a = single_stable_member(&c);
    let mut b = c.join_group(join_req("", &["range"]), 1_000);
    pending(&mut b);
    assert_eq!(state(&c), ClassicGroupStateName::PreparingRebalance);
    assert_eq!(hb(&c, &a, 1, 1_100), Err(GroupError::RebalanceInProgress));
    let mut a2 = c.join_group(join_req(&a, &["range"]), 1_200);
    let (ra, rb) = (ready(&mut a2), ready(&mut b));
    assert_eq!(ra.generation_id, 2);
    assert_eq!(rb.generation_id, 2);
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2);
    // Syncing with the old generation is refused.
    let mut old = sync(&c, &a, 1, vec![], 1_300);
    assert_eq!(ready(&mut old).error, Some(GroupError::IllegalGeneration));
}

#[test]
fn members_that_do_not_rejoin_are_removed_at_rebalance_timeout() {
    let c = coordinator();
    let (a, b) = second_member_joined(&c, 0);
    let assign = vec![(a.clone(), Bytes::from("1")), (b.clone(), Bytes::from("2"))];
    ready(&mut sync(&c, &a, 2, assign, 0));
    ready(&mut sync(&c, &b, 2, vec![], 0));
    // A third member joins; b keeps heartbeating but never rejoins.
    let mut d = c.join_group(join_req("", &["range"]), 1_000);
    let mut a3 = c.join_group(join_req(&a, &["range"]), 1_000);
    for t in (2_000..REBALANCE).step_by(2_000) {
        let _ = hb(&c, &b, 2, t);
        c.tick(t);
    }
    pending(&mut a3);
    c.tick(1_000 + REBALANCE);
    let (ra, rd) = (ready(&mut a3), ready(&mut d));
    assert_eq!(ra.generation_id, 3);
    assert_eq!(rd.generation_id, 3);
    assert_eq!(ra.members.len(), 2);
    assert_eq!(
        hb(&c, &b, 3, 1_000 + REBALANCE),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn session_timeout_evicts_and_rebalances() {
    let c = coordinator();
    let (a, b) = two_stable_members(&c, 100);
    // a heartbeats, b goes silent.
    for t in (1_000..=SESSION + 100).step_by(1_000) {
        assert_eq!(hb(&c, &a, 2, t), Ok(()));
        c.tick(t);
    }
    c.tick(SESSION + 100);
    assert_eq!(state(&c), ClassicGroupStateName::PreparingRebalance);
    assert_eq!(
        hb(&c, &a, 2, SESSION + 200),
        Err(GroupError::RebalanceInProgress)
    );
    let mut a3 = c.join_group(join_req(&a, &["range"]), SESSION + 300);
    let r = ready(&mut a3);
    assert_eq!(r.generation_id, 3);
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        hb(&c, &b, 2, SESSION + 300),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn expired_pending_member_unblocks_the_rebalance() {
    let c = coordinator();
    let a = single_stable_member(&c);
    let mut req = join_req("", &["range"]);
    req.require_known_member_id = true;
    let first = ready(&mut c.join_group(req, 0));
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    // The group only rebalances once the pending member rejoins; a's rejoin in Stable as the
    // leader starts one, which must wait for the pending id.
    let mut a2 = c.join_group(join_req(&a, &["range"]), 0);
    pending(&mut a2);
    c.tick(SESSION - 1);
    pending(&mut a2);
    c.tick(SESSION);
    assert_eq!(ready(&mut a2).generation_id, 2);
}

#[test]
fn leave_group_batched_and_last_leave_empties_group() {
    let c = coordinator();
    let mut a = c.join_group(join_req("", &["range"]), 0);
    let ra = ready(&mut a);
    let mut b = c.join_group(join_req("", &["range"]), 0);
    let mut a2 = c.join_group(join_req(&ra.member_id, &["range"]), 0);
    let rb = ready(&mut b);
    ready(&mut a2);
    let res = c
        .leave_group(
            "g",
            &[
                LeavingMember {
                    member_id: ra.member_id.clone(),
                    group_instance_id: None,
                },
                LeavingMember {
                    member_id: "ghost".into(),
                    group_instance_id: None,
                },
                LeavingMember {
                    member_id: rb.member_id.clone(),
                    group_instance_id: None,
                },
            ],
            10,
        )
        .unwrap();
    assert_eq!(res, vec![Ok(()), Err(GroupError::UnknownMemberId), Ok(())]);
    let d = c.describe_group("g").unwrap();
    assert_eq!(d.state, ClassicGroupStateName::Empty);
    assert_eq!(d.generation_id, 3);
    assert!(d.members.is_empty());
    // Without offsets an empty group disappears at the next cleanup.
    c.tick(GroupConfig::default().offsets_retention_check_interval_ms);
    assert_eq!(c.describe_group("g"), Err(GroupError::GroupIdNotFound));
}

#[test]
fn leader_leaving_during_sync_restarts_rebalance() {
    let c = coordinator();
    let (a, b) = second_member_joined(&c, 0);
    let mut sb = sync(&c, &b, 2, vec![], 0);
    pending(&mut sb);
    c.leave_group(
        "g",
        &[LeavingMember {
            member_id: a.clone(),
            group_instance_id: None,
        }],
        1,
    )
    .unwrap();
    assert_eq!(ready(&mut sb).error, Some(GroupError::RebalanceInProgress));
    let mut b2 = c.join_group(join_req(&b, &["range"]), 2);
    let r = ready(&mut b2);
    assert_eq!(r.leader, b);
    assert_eq!(r.generation_id, 3);
}

#[test]
fn follower_rejoin_with_same_metadata_does_not_rebalance_but_leader_does() {
    let c = coordinator();
    let (a, b) = two_stable_members(&c, 0);
    let r = ready(&mut c.join_group(join_req(&b, &["range"]), 1));
    assert_eq!(r.generation_id, 2);
    assert_eq!(state(&c), ClassicGroupStateName::Stable);
    let mut a3 = c.join_group(join_req(&a, &["range"]), 2);
    pending(&mut a3);
    assert_eq!(state(&c), ClassicGroupStateName::PreparingRebalance);
}

#[test]
fn static_member_rejoin_keeps_generation_and_fences_old_id() {
    let c = coordinator();
    let mut req = join_req("", &["range"]);
    req.group_instance_id = Some("inst-1".into());
    req.require_known_member_id = true;
    let r1 = ready(&mut c.join_group(req.clone(), 0));
    // Static members join directly, without MEMBER_ID_REQUIRED.
    assert_eq!(r1.error, None);
    assert!(r1.member_id.starts_with("inst-1-"));
    ready(&mut sync(
        &c,
        &r1.member_id,
        1,
        vec![(r1.member_id.clone(), Bytes::from("A"))],
        0,
    ));

    // Process restarts: same instance id, no member id.
    let r2 = ready(&mut c.join_group(req.clone(), 1_000));
    assert_eq!(r2.error, None);
    assert_ne!(r2.member_id, r1.member_id);
    assert_eq!(r2.generation_id, 1);
    assert_eq!(state(&c), ClassicGroupStateName::Stable);
    let hb_old = c.heartbeat(
        &HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: r1.member_id.clone(),
            group_instance_id: Some("inst-1".into()),
        },
        1_100,
    );
    assert_eq!(hb_old, Err(GroupError::FencedInstanceId));
    let mut s = c.sync_group(
        SyncRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: r2.member_id.clone(),
            group_instance_id: Some("inst-1".into()),
            protocol_type: None,
            protocol_name: None,
            assignments: vec![],
        },
        1_200,
    );
    assert_eq!(ready(&mut s).assignment, Bytes::from("A"));
    // The old id joining again is fenced too.
    let mut old = req.clone();
    old.member_id = r1.member_id.clone();
    assert_eq!(
        ready(&mut c.join_group(old, 1_300)).error,
        Some(GroupError::FencedInstanceId)
    );
    // Leaving by instance id with a stale member id is fenced; with the current one it works.
    let res = c
        .leave_group(
            "g",
            &[
                LeavingMember {
                    member_id: r1.member_id.clone(),
                    group_instance_id: Some("inst-1".into()),
                },
                LeavingMember {
                    member_id: String::new(),
                    group_instance_id: Some("inst-1".into()),
                },
            ],
            1_400,
        )
        .unwrap();
    assert_eq!(res, vec![Err(GroupError::FencedInstanceId), Ok(())]);
    assert_eq!(state(&c), ClassicGroupStateName::Empty);
}

#[test]
fn static_member_absent_at_rebalance_keeps_its_place_until_session_expiry() {
    let c = coordinator();
    let mut sreq = join_req("", &["range"]);
    sreq.group_instance_id = Some("s".into());
    let rs = ready(&mut c.join_group(sreq, 0));
    ready(&mut sync(&c, &rs.member_id, 1, vec![], 0));
    let mut d = c.join_group(join_req("", &["range"]), 100);
    pending(&mut d);
    // The static member keeps heartbeating (told to rejoin) but never rejoins.
    for t in (1_000..=100 + REBALANCE).step_by(1_000) {
        assert_eq!(
            hb(&c, &rs.member_id, 1, t),
            Err(GroupError::RebalanceInProgress)
        );
        c.tick(t);
    }
    c.tick(100 + REBALANCE);
    // The static member did not rejoin but stays; the dynamic newcomer leads generation 2.
    let rd = ready(&mut d);
    assert_eq!(rd.generation_id, 2);
    assert_eq!(rd.leader, rd.member_id);
    assert_eq!(rd.members.len(), 2);
    // Its last heartbeat was at REBALANCE: the session ends SESSION later.
    c.tick(REBALANCE + SESSION - 1);
    assert_eq!(state(&c), ClassicGroupStateName::CompletingRebalance);
    c.tick(REBALANCE + SESSION);
    assert_eq!(state(&c), ClassicGroupStateName::PreparingRebalance);
    assert_eq!(c.describe_group("g").unwrap().members.len(), 1);
}

#[test]
fn protocol_checks_and_invalid_inputs() {
    let c = coordinator();
    let _a = single_stable_member(&c);
    let mut other_type = join_req("", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        ready(&mut c.join_group(other_type, 0)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        ready(&mut c.join_group(join_req("", &["sticky"]), 0)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    let mut empty = join_req("", &[]);
    empty.group_id = "fresh".into();
    assert_eq!(
        ready(&mut c.join_group(empty, 0)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert!(c.list_groups(&[]).iter().all(|g| g.group_id != "fresh"));

    let mut bad = join_req("", &["range"]);
    bad.group_id = String::new();
    assert_eq!(
        ready(&mut c.join_group(bad.clone(), 0)).error,
        Some(GroupError::InvalidGroupId)
    );
    bad.group_id = "x".repeat(MAX_GROUP_ID_LEN + 1);
    assert_eq!(
        ready(&mut c.join_group(bad, 0)).error,
        Some(GroupError::InvalidGroupId)
    );
    let mut short = join_req("", &["range"]);
    short.session_timeout_ms = 5_999;
    assert_eq!(
        ready(&mut c.join_group(short.clone(), 0)).error,
        Some(GroupError::InvalidSessionTimeout)
    );
    short.session_timeout_ms = 1_800_001;
    assert_eq!(
        ready(&mut c.join_group(short, 0)).error,
        Some(GroupError::InvalidSessionTimeout)
    );
    assert_eq!(
        ready(&mut c.join_group(join_req("made-up", &["range"]), 0)).error,
        Some(GroupError::UnknownMemberId)
    );
    assert_eq!(GroupError::InvalidGroupId.code(), 24);
    assert_eq!(GroupError::MemberIdRequired.code(), 79);
}

#[test]
fn protocol_selection_across_members() {
    let c = coordinator();
    let mut a = c.join_group(join_req("", &["cooperative-sticky", "range"]), 0);
    let ra = ready(&mut a);
    assert_eq!(ra.protocol_name.as_deref(), Some("cooperative-sticky"));
    let mut b = c.join_group(join_req("", &["range"]), 0);
    let mut a2 = c.join_group(join_req(&ra.member_id, &["cooperative-sticky", "range"]), 0);
    let r = ready(&mut a2);
    ready(&mut b);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members[0].metadata, Bytes::from("meta-range"));
}

fn commit(
    c: &Timed,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64)],
    now: u64,
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    c.commit_offsets(
        &OffsetCommitRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            retention_ms: None,
            offsets: offsets
                .iter()
                .map(|(t, p, o)| OffsetCommitEntry {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: 7,
                    metadata: Some(format!("md-{o}")),
                })
                .collect(),
        },
        now,
    )
}

#[test]
fn offset_commit_checks_membership_and_round_trips() {
    let c = coordinator();
    let a = single_stable_member(&c);
    assert_eq!(
        commit(&c, 1, &a, &[("t", 0, 10), ("t", 1, 20)], 5),
        Ok(vec![Ok(()), Ok(())])
    );
    assert_eq!(
        commit(&c, 1, "ghost", &[("t", 0, 11)], 5),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        commit(&c, 0, &a, &[("t", 0, 11)], 5),
        Err(GroupError::IllegalGeneration)
    );
    // Outside group management while the group has members: refused.
    assert_eq!(
        commit(&c, -1, "", &[("t", 0, 11)], 5),
        Err(GroupError::UnknownMemberId)
    );
    let got = c
        .fetch_offsets("g", Some(&[("t".into(), 0), ("t".into(), 9)]))
        .unwrap();
    let c0 = got[0].1.clone().unwrap();
    assert_eq!(
        (c0.offset, c0.leader_epoch, c0.metadata.as_str()),
        (10, 7, "md-10")
    );
    assert_eq!(got[1].1, None);
    assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 2);
    // During CompletingRebalance members must finish the rebalance first.
    let mut b = c.join_group(join_req("", &["range"]), 6);
    let mut a2 = c.join_group(join_req(&a, &["range"]), 6);
    ready(&mut b);
    ready(&mut a2);
    assert_eq!(
        commit(&c, 2, &a, &[("t", 0, 12)], 7),
        Err(GroupError::RebalanceInProgress)
    );
    // Too large metadata is refused per partition.
    let big = c.commit_offsets(
        &OffsetCommitRequest {
            group_id: "solo".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            retention_ms: None,
            offsets: vec![OffsetCommitEntry {
                topic: "t".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: Some("m".repeat(5000)),
            }],
        },
        8,
    );
    assert_eq!(big, Ok(vec![Err(GroupError::OffsetMetadataTooLarge)]));
    // A commit with a generation to a group that does not exist.
    let unknown = c.commit_offsets(
        &OffsetCommitRequest {
            group_id: "nope".into(),
            generation_id: 3,
            member_id: "m".into(),
            group_instance_id: None,
            retention_ms: None,
            offsets: vec![],
        },
        8,
    );
    assert_eq!(unknown, Err(GroupError::IllegalGeneration));
}

#[test]
fn simple_commits_create_an_empty_group_that_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    {
        let db = MetaStore::open(&path).unwrap();
        let c = Timed::new(
            GroupConfig::default(),
            RedbOffsetStore::open(Arc::new(db)).unwrap(),
        );
        assert_eq!(commit(&c, -1, "", &[("t", 3, 42)], 0), Ok(vec![Ok(())]));
        let mut other = join_req("", &["range"]);
        other.group_id = "members".into();
        let mut rx = c.join_group(other.clone(), 0);
        c.tick(3_000); // initial delay
        let r = ready(&mut rx);
        assert_eq!(r.error, None);
        let _ = c.commit_offsets(
            &OffsetCommitRequest {
                group_id: "members".into(),
                generation_id: 1,
                member_id: r.member_id.clone(),
                group_instance_id: None,
                retention_ms: None,
                offsets: vec![],
            },
            3_000,
        );
    }
    let db = MetaStore::open(&path).unwrap();
    let c = Timed::new(
        GroupConfig::default(),
        RedbOffsetStore::open(Arc::new(db)).unwrap(),
    );
    c.at(10);
    let groups = c.list_groups(&[ClassicGroupStateName::Empty]);
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0].group_id, "g");
    assert_eq!(groups[1].protocol_type, "consumer");
    let got = c.fetch_offsets("g", None).unwrap();
    assert_eq!(got[0].0, ("t".to_string(), 3));
    assert_eq!(got[0].1.as_ref().map(|o| o.offset), Some(42));
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let c = coordinator_with(GroupConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        ..GroupConfig::default()
    });
    let a = single_stable_member(&c);
    commit(&c, 1, &a, &[("t", 0, 5)], 0).unwrap();
    // Stable group subscribed (unknown metadata): offsets are kept however old.
    for t in (1_000..=120_000).step_by(1_000) {
        hb(&c, &a, 1, t).unwrap();
        c.tick(t);
    }
    assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 1);
    c.leave_group(
        "g",
        &[LeavingMember {
            member_id: a,
            group_instance_id: None,
        }],
        120_000,
    )
    .unwrap();
    c.tick(179_000);
    assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 1);
    c.tick(180_000);
    assert!(c.fetch_offsets("g", None).unwrap().is_empty());
    assert_eq!(c.describe_group("g"), Err(GroupError::GroupIdNotFound));
}

#[test]
fn delete_groups_and_offset_delete() {
    let c = coordinator();
    let a = single_stable_member(&c);
    commit(&c, 1, &a, &[("t", 0, 5), ("u", 0, 6)], 0).unwrap();
    assert_eq!(
        c.delete_groups(&["g".into(), "missing".into(), String::new()]),
        vec![
            Err(GroupError::NonEmptyGroup),
            Err(GroupError::GroupIdNotFound),
            Err(GroupError::InvalidGroupId)
        ]
    );
    // Subscriptions cannot be decoded (test metadata): every topic is protected.
    assert_eq!(
        c.delete_offsets("g", &[("u".into(), 0)]),
        Ok(vec![Err(GroupError::GroupSubscribedToTopic)])
    );
    c.leave_group(
        "g",
        &[LeavingMember {
            member_id: a,
            group_instance_id: None,
        }],
        1,
    )
    .unwrap();
    assert_eq!(c.delete_offsets("g", &[("u".into(), 0)]), Ok(vec![Ok(())]));
    assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 1);
    assert_eq!(c.delete_groups(&["g".into()]), vec![Ok(())]);
    assert!(c.fetch_offsets("g", None).unwrap().is_empty());
    assert!(c.list_groups(&[]).is_empty());
    assert_eq!(c.delete_offsets("g", &[]), Err(GroupError::GroupIdNotFound));
}

#[test]
fn offset_delete_uses_consumer_subscriptions() {
    use bytes::BytesMut;
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let c = coordinator();
    let sub =
        ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    sub.encode(&mut buf, 0).unwrap();
    let mut req = join_req("", &["range"]);
    req.protocols = vec![("range".into(), buf.freeze())];
    let r = ready(&mut c.join_group(req, 0));
    ready(&mut sync(&c, &r.member_id, 1, vec![], 0));
    commit(&c, 1, &r.member_id, &[("t", 0, 5), ("u", 0, 6)], 0).unwrap();
    assert_eq!(
        c.delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)]),
        Ok(vec![Err(GroupError::GroupSubscribedToTopic), Ok(())])
    );
}

fn topic_id() -> uuid::Uuid {
    uuid::Uuid::from_u128(42)
}

fn resolve(name: &str) -> Option<(uuid::Uuid, i32)> {
    (name == "t").then_some((topic_id(), 4))
}

fn beat(
    c: &Timed,
    member: &str,
    epoch: i32,
    owned: Option<Assignment>,
    now: u64,
) -> Result<ConsumerHeartbeatResponse, GroupError> {
    c.consumer_group_heartbeat(
        &ConsumerHeartbeatRequest {
            group_id: "cg".into(),
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: 5_000,
            subscribed_topic_names: (epoch == 0).then(|| vec!["t".to_string()]),
            owned,
            ..Default::default()
        },
        &resolve,
        now,
    )
}

fn parts(a: &Option<Assignment>) -> usize {
    a.as_ref().map_or(0, |a| a.values().map(|s| s.len()).sum())
}

#[test]
fn kip848_members_converge_without_double_ownership() {
    let c = coordinator();
    let a1 = beat(&c, "a", 0, None, 0).unwrap();
    assert_eq!(a1.member_epoch, 1);
    assert_eq!(parts(&a1.assignment), 4);
    // Unchanged: no assignment in the response.
    let a2 = beat(&c, "a", 1, a1.assignment.clone(), 10).unwrap();
    assert_eq!(a2.assignment, None);

    // b joins: it is at the new epoch but gets nothing until a revokes.
    let b1 = beat(&c, "b", 0, None, 20).unwrap();
    assert_eq!(b1.member_epoch, 2);
    assert_eq!(parts(&b1.assignment), 0);
    let a3 = beat(&c, "a", 1, a1.assignment.clone(), 30).unwrap();
    assert_eq!(a3.member_epoch, 1, "a stays behind until it has revoked");
    assert_eq!(parts(&a3.assignment), 2);
    // A commit from a at its (still current) epoch works; a stale epoch is refused.
    let commit = |member: &str, epoch: i32| {
        c.commit_offsets(
            &OffsetCommitRequest {
                group_id: "cg".into(),
                generation_id: epoch,
                member_id: member.into(),
                group_instance_id: None,
                retention_ms: None,
                offsets: vec![OffsetCommitEntry {
                    topic: "t".into(),
                    partition: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: None,
                }],
            },
            35,
        )
    };
    assert_eq!(commit("a", 1), Ok(vec![Ok(())]));
    assert_eq!(commit("a", 0), Err(GroupError::StaleMemberEpoch));
    assert_eq!(commit("zz", 1), Err(GroupError::UnknownMemberId));
    assert_eq!(commit("", -1), Err(GroupError::UnknownMemberId));
    // a acknowledges the revocation, moves to epoch 2; then b gets the two partitions.
    let a4 = beat(&c, "a", 1, a3.assignment.clone(), 40).unwrap();
    assert_eq!(a4.member_epoch, 2);
    let b2 = beat(&c, "b", 2, Some(Assignment::new()), 50).unwrap();
    assert_eq!(parts(&b2.assignment), 2);
    let (sa, sb) = (a3.assignment.unwrap(), b2.assignment.unwrap());
    assert!(sa[&topic_id()].is_disjoint(&sb[&topic_id()]));
    let d = c.consumer_group_describe("cg").unwrap();
    assert_eq!(d.state, "Stable");
    assert_eq!(d.members.len(), 2);

    // Zombie epochs are fenced; a classic member cannot join.
    assert_eq!(
        beat(&c, "b", 7, None, 60),
        Err(GroupError::FencedMemberEpoch)
    );
    assert_eq!(
        beat(&c, "nobody", 2, None, 60),
        Err(GroupError::UnknownMemberId)
    );
    let mut classic = join_req("", &["range"]);
    classic.group_id = "cg".into();
    assert_eq!(
        ready(&mut c.join_group(classic, 60)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        c.delete_groups(&["cg".into()]),
        vec![Err(GroupError::NonEmptyGroup)]
    );

    // b leaves; a's session later expires; the group ends as an empty classic group with its
    // offsets.
    let left = beat(&c, "b", -1, None, 70).unwrap();
    assert_eq!(left.member_epoch, -1);
    c.tick(70 + GroupConfig::default().consumer_session_timeout_ms);
    assert_eq!(
        c.consumer_group_describe("cg"),
        Err(GroupError::GroupIdNotFound)
    );
    assert_eq!(
        c.describe_group("cg").unwrap().state,
        ClassicGroupStateName::Empty
    );
    assert_eq!(c.fetch_offsets("cg", None).unwrap().len(), 1);
}

#[test]
fn kip848_rejects_unknown_assignors_and_regex() {
    let c = coordinator();
    let mut req = ConsumerHeartbeatRequest {
        group_id: "cg".into(),
        member_id: "m".into(),
        subscribed_topic_names: Some(vec!["t".into()]),
        server_assignor: Some("sticky".into()),
        ..Default::default()
    };
    assert_eq!(
        c.consumer_group_heartbeat(&req, &resolve, 0),
        Err(GroupError::UnsupportedAssignor)
    );
    req.server_assignor = None;
    req.subscribed_topic_regex = Some("t.*".into());
    assert!(matches!(
        c.consumer_group_heartbeat(&req, &resolve, 0),
        Err(GroupError::InvalidRequest(_))
    ));
    // A classic group with members is not a consumer group.
    let _ = single_stable_member(&c);
    req.group_id = "g".into();
    req.subscribed_topic_regex = None;
    assert_eq!(
        c.consumer_group_heartbeat(&req, &resolve, 0),
        Err(GroupError::GroupIdNotFound)
    );
}

#[test]
fn leader_that_never_syncs_is_removed_at_the_rebalance_timeout() {
    let c = coordinator();
    let mut a = c.join_group(join_req("", &["range"]), 0);
    let ra = ready(&mut a);
    let mut b = c.join_group(join_req("", &["range"]), 0);
    let mut a2 = c.join_group(join_req(&ra.member_id, &["range"]), 0);
    let rb = ready(&mut b);
    assert_eq!(ready(&mut a2).leader, ra.member_id);
    // The follower syncs and waits; the leader keeps heartbeating but never syncs.
    let mut sb = sync(&c, &rb.member_id, 2, vec![], 10);
    for t in (1_000..REBALANCE).step_by(1_000) {
        assert_eq!(hb(&c, &ra.member_id, 2, t), Ok(()));
        assert_eq!(hb(&c, &rb.member_id, 2, t), Ok(()));
        c.tick(t);
    }
    pending(&mut sb);
    c.tick(REBALANCE);
    // The leader is gone; the follower is told to rejoin and leads the next generation.
    assert_eq!(ready(&mut sb).error, Some(GroupError::RebalanceInProgress));
    assert_eq!(
        hb(&c, &ra.member_id, 2, REBALANCE),
        Err(GroupError::UnknownMemberId)
    );
    let r = ready(&mut c.join_group(join_req(&rb.member_id, &["range"]), REBALANCE + 1));
    assert_eq!(
        (r.generation_id, r.leader.as_str()),
        (3, rb.member_id.as_str())
    );
}
