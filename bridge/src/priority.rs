//! Priority scheduling of the mirror tasks of one bridge: a backlog drain never starves live data.
//!
//! Every mirror task (one per mirror and source partition) holds a [`Lane`] of the bridge's
//! [`Scheduler`] at its mirror's priority. A lane is *ready* while its task has data to send (from
//! the start of a session until it finds the log drained, and again whenever it asks for a
//! turn); before sending a batch the task asks the lane for a [`Turn`], giving the batch size, and
//! holds it until the target acknowledged the batch. The rules:
//!
//! - **Strict priority.** A task does not start a send while a lane of a higher priority is ready,
//!   waiting for a turn or has a send in flight. Sends in flight are never interrupted, so a
//!   higher-priority task never waits for a lower one: its turn is granted at once. Between two
//!   batches of a higher-priority drain its lane stays ready, so lower ones do not slip in.
//! - **Bounded lower-priority in-flight bytes.** Below the highest configured priority, the bytes
//!   in flight per level are capped ([`LOWER_LEVEL_BUDGET`]; one batch always fits). When an alarm
//!   shows up during a drain, at most that much backlog is still travelling ahead of it (on a thin
//!   uplink every connection in flight takes its share of the link). The highest level has no
//!   cap, so mirrors of one priority drain with every partition in flight.
//! - **Fair within a level.** Turns of one priority are granted first come, first served: a task
//!   that just finished a send queues behind the tasks already waiting.
//! - **Event driven.** Waiting is on a [`Notify`] woken by every change of the state; nothing
//!   polls. As soon as the higher levels are idle, the lower ones proceed.
//!
//! A higher-priority stream that keeps its lane busy all the time stops the lower ones (strict
//! priority); a task sleeping for its `bandwidth_bytes_per_sec` cap marks its lane idle, so a
//! capped mirror leaves the rest of the link to the others.

use rill_core::sync::LockExt;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// In-flight bytes allowed per priority level below the highest configured one.
pub const LOWER_LEVEL_BUDGET: usize = 2 << 20;

/// One priority level: ready lanes, waiting tickets (first come, first served), sends in flight.
#[derive(Debug, Default)]
struct Level {
    ready: usize,
    waiting: VecDeque<u64>,
    in_flight: usize,
    in_flight_bytes: usize,
}

impl Level {
    fn busy(&self) -> bool {
        self.ready > 0 || !self.waiting.is_empty() || self.in_flight > 0
    }
}

#[derive(Debug, Default)]
struct State {
    levels: BTreeMap<i32, Level>,
    next_ticket: u64,
}

/// The scheduler shared by the mirror tasks of one bridge.
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
    changed: Notify,
    /// Levels at or above this have no in-flight byte budget.
    top: i32,
    budget: usize,
}

/// What a lane is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneState {
    Idle,
    Ready,
    Waiting,
    InFlight,
}

/// One task's place in the scheduler (see the module documentation).
#[derive(Debug)]
pub struct Lane {
    scheduler: Arc<Scheduler>,
    priority: i32,
    state: LaneState,
}

impl Scheduler {
    /// A scheduler for mirrors with these priorities: the highest has no in-flight budget, lower
    /// ones [`LOWER_LEVEL_BUDGET`] bytes per level.
    pub fn for_priorities(priorities: impl IntoIterator<Item = i32>) -> Arc<Scheduler> {
        let top = priorities.into_iter().max().unwrap_or(0);
        Arc::new(Scheduler::new(top, LOWER_LEVEL_BUDGET))
    }

    /// A scheduler where levels below `top` may have `budget` bytes in flight each.
    pub fn new(top: i32, budget: usize) -> Scheduler {
        Scheduler {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            top,
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (no await or fallible step under the lock).
        self.state.lock_unpoisoned()
    }

    /// A lane at `priority`, ready (its task presumably has data until it finds otherwise).
    pub fn lane(self: &Arc<Self>, priority: i32) -> Lane {
        self.lock().levels.entry(priority).or_default().ready += 1;
        Lane {
            scheduler: self.clone(),
            priority,
            state: LaneState::Ready,
        }
    }

    /// Update a level (removed when no longer busy) and wake every waiter.
    fn update(&self, priority: i32, f: impl FnOnce(&mut Level)) {
        let mut st = self.lock();
        let level = st.levels.entry(priority).or_default();
        f(level);
        if !level.busy() {
            st.levels.remove(&priority);
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Admit `ticket` if the rules allow it now.
    fn try_admit(&self, priority: i32, ticket: u64, bytes: usize) -> bool {
        let mut st = self.lock();
        if st
            .levels
            .range(priority.saturating_add(1)..)
            .any(|(_, l)| l.busy())
        {
            return false;
        }
        let Some(level) = st.levels.get_mut(&priority) else {
            return false;
        };
        if level.waiting.front() != Some(&ticket) {
            return false;
        }
        if priority < self.top
            && level.in_flight_bytes > 0
            && level.in_flight_bytes + bytes > self.budget
        {
            return false;
        }
        level.waiting.pop_front();
        level.in_flight += 1;
        level.in_flight_bytes += bytes;
        drop(st);
        // The next ticket of this level may fit as well.
        self.changed.notify_waiters();
        true
    }
}

impl Lane {
    /// Wait for a turn to send a batch of `bytes`; the turn ends when the returned [`Turn`] is
    /// dropped (after the target's acknowledgement), leaving the lane ready. Cancel safe: dropping
    /// the future gives up the place in the queue and leaves the lane idle.
    pub async fn turn(&mut self, bytes: usize) -> Turn<'_> {
        let scheduler = self.scheduler.clone();
        let priority = self.priority;
        let was_ready = self.state == LaneState::Ready;
        let ticket = {
            let mut st = scheduler.lock();
            let t = st.next_ticket;
            st.next_ticket += 1;
            let level = st.levels.entry(priority).or_default();
            if was_ready {
                level.ready = level.ready.saturating_sub(1);
            }
            level.waiting.push_back(t);
            t
        };
        self.state = LaneState::Waiting;
        let mut place = Place {
            lane: self,
            ticket,
            admitted: false,
        };
        loop {
            let notified = scheduler.changed.notified();
            tokio::pin!(notified);
            // Register for wake-ups before looking, so a change in between is not missed.
            notified.as_mut().enable();
            if scheduler.try_admit(priority, ticket, bytes) {
                place.admitted = true;
                place.lane.state = LaneState::InFlight;
                return Turn { place, bytes };
            }
            notified.await;
        }
    }

    /// The task found nothing to send (or is sleeping for its bandwidth cap): lower priorities
    /// may go.
    pub fn idle(&mut self) {
        if self.state == LaneState::Ready {
            self.state = LaneState::Idle;
            self.scheduler
                .update(self.priority, |l| l.ready = l.ready.saturating_sub(1));
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.idle();
    }
}

/// A lane's ticket in the queue of its level; given up on drop unless it was admitted.
#[derive(Debug)]
struct Place<'a> {
    lane: &'a mut Lane,
    ticket: u64,
    admitted: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.admitted {
            let t = self.ticket;
            self.lane.state = LaneState::Idle;
            self.lane
                .scheduler
                .update(self.lane.priority, |l| l.waiting.retain(|w| *w != t));
        }
    }
}

/// The right to have one batch in flight; dropping it lets the next tasks go and leaves the lane
/// ready.
#[derive(Debug)]
pub struct Turn<'a> {
    place: Place<'a>,
    bytes: usize,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let bytes = self.bytes;
        let lane = &mut *self.place.lane;
        lane.state = LaneState::Ready;
        lane.scheduler.update(lane.priority, |l| {
            l.in_flight = l.in_flight.saturating_sub(1);
            l.in_flight_bytes = l.in_flight_bytes.saturating_sub(bytes);
            l.ready += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::*;

    /// Long in virtual time; with the clock paused the tests do not wait for it.
    const PATIENCE: Duration = Duration::from_secs(3600);

    /// Whether the lane gets a turn for `bytes` within [`PATIENCE`] (virtual time).
    async fn granted(lane: &mut Lane, bytes: usize) -> Option<Turn<'_>> {
        timeout(PATIENCE, lane.turn(bytes)).await.ok()
    }

    /// A task that asks for one turn at `p` and reports `p` on `tx` when it gets it.
    fn contender(s: &Arc<Scheduler>, p: i32, tx: &mpsc::UnboundedSender<i32>) {
        let (s, tx) = (s.clone(), tx.clone());
        tokio::spawn(async move {
            let mut lane = s.lane(p);
            let _turn = lane.turn(100).await;
            tx.send(p).ok();
        });
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priority_lanes_go_first_and_release_in_order() {
        let s = Arc::new(Scheduler::new(10, 1 << 20));
        let mut alarm = s.lane(10);
        let mut bulk = s.lane(0);
        assert!(
            granted(&mut bulk, 100).await.is_none(),
            "bulk waits while alarm is ready"
        );
        let turn = granted(&mut alarm, 100)
            .await
            .expect("the top is granted at once");
        let (tx, mut rx) = mpsc::unbounded_channel();
        contender(&s, 0, &tx);
        tokio::task::yield_now().await;
        contender(&s, 5, &tx);
        assert!(
            timeout(PATIENCE, rx.recv()).await.is_err(),
            "alarm in flight"
        );
        drop(turn);
        assert!(
            timeout(PATIENCE, rx.recv()).await.is_err(),
            "alarm still ready between batches"
        );
        alarm.idle();
        assert_eq!(rx.recv().await, Some(5), "the higher waiting level first");
        assert_eq!(rx.recv().await, Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn low_priority_proceeds_as_soon_as_high_is_idle() {
        let s = Arc::new(Scheduler::new(10, 1 << 20));
        {
            let mut bulk = s.lane(0);
            assert!(
                granted(&mut bulk, 1 << 20).await.is_some(),
                "alone: no wait"
            );
        }
        let mut alarm = s.lane(10);
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut bulk = s.lane(0);
                drop(bulk.turn(10).await);
                tokio::time::Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        let idle_at = tokio::time::Instant::now();
        alarm.idle();
        let granted_at = waiter.await.expect("task");
        assert_eq!(granted_at, idle_at, "woken by the event, not a timer");
    }

    #[tokio::test(start_paused = true)]
    async fn equal_priorities_share_fairly() {
        // Level 0 under a top of 10 with room for one batch: two tasks keep sending; they get
        // turns alternately (first come, first served), neither starves.
        let s = Arc::new(Scheduler::new(10, 100));
        let (tx, mut rx) = mpsc::unbounded_channel();
        for id in 0..2 {
            let (s, tx) = (s.clone(), tx.clone());
            tokio::spawn(async move {
                let mut lane = s.lane(0);
                for _ in 0..50 {
                    let turn = lane.turn(100).await;
                    tx.send(id).ok();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(turn);
                }
            });
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some(id) = rx.recv().await {
            order.push(id);
        }
        assert_eq!(order.len(), 100);
        let longest_run = order
            .chunk_by(|a, b| a == b)
            .map(<[i32]>::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run <= 2, "turns not shared: {order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn lower_levels_have_an_in_flight_budget_the_top_has_none() {
        let s = Arc::new(Scheduler::new(10, 1000));
        let mut tops: Vec<Lane> = (0..5).map(|_| s.lane(10)).collect();
        let mut turns = Vec::new();
        for lane in tops.iter_mut() {
            turns.push(
                granted(lane, 600)
                    .await
                    .expect("the top level has no budget"),
            );
        }
        drop(turns);
        drop(tops);
        // Below the top: 600 + 600 > 1000 waits until the first is acknowledged; 300 fits; a
        // batch larger than the budget still goes alone.
        let (mut a, mut b, mut c, mut d) = (s.lane(0), s.lane(0), s.lane(0), s.lane(0));
        let ta = granted(&mut a, 600).await.expect("granted");
        assert!(granted(&mut b, 600).await.is_none());
        let tc = granted(&mut c, 300).await.expect("fits in the budget");
        drop((ta, tc));
        assert!(
            granted(&mut d, 5000).await.is_some(),
            "one batch always fits"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_up_its_place() {
        let s = Arc::new(Scheduler::new(10, 100));
        let (mut a, mut b, mut c) = (s.lane(0), s.lane(0), s.lane(0));
        let held = granted(&mut a, 100).await.expect("granted");
        assert!(
            granted(&mut b, 100).await.is_none(),
            "cancelled by the timeout"
        );
        drop(held);
        a.idle();
        assert!(granted(&mut c, 100).await.is_some(), "b's ticket is gone");
        c.idle();
        // A cancelled wait at a higher level leaves its lane idle: lower levels go on.
        let mut m = s.lane(5);
        let mut m2 = s.lane(5);
        let held = granted(&mut m, 100).await.expect("granted");
        assert!(granted(&mut m2, 100).await.is_none());
        drop(held);
        m.idle();
        assert!(granted(&mut b, 100).await.is_some());
    }
}
