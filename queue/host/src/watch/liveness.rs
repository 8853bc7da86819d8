//! Is the sidecar behind a queue directory alive? A pure state machine fed
//! with the events delivered and the heartbeat read; the watcher decides
//! when to ask and what to do with the answer.
//!
//! A directory is *open* while its latest session has no `session_end`
//! (a directory where nothing has happened yet is open too: a sidecar that
//! never came up must not look like one about to start forever). An open
//! directory is *stale* when its liveness reference is older than
//! `stale_intervals` heartbeat intervals; the reference is the heartbeat's
//! `ts`, or, without a usable heartbeat for this session, the session's
//! start time (from its id), or the time watching started.
//!
//! The watchdog (optional) judges the agent rather than the sidecar: an
//! open directory that is not stale, whose latest session has written no
//! event for the watchdog's limit, fires once per silence. Heartbeats do
//! not count; events do. An event's time is its `ts`, but never later than
//! when the watcher saw it, so an event dated in the future cannot hold the
//! watchdog off.

use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_protocol::event::{Event, EventBody};

use crate::names::is_session_id;
use crate::reader::parse_ts;
use crate::writer::Heartbeat;
use crate::writer::parse_stamp;

/// A change of liveness to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The directory just became stale.
    BecameStale,
    /// A stale directory's heartbeat is fresh again.
    Recovered,
    /// The latest session, alive, wrote no event for the watchdog's limit.
    Watchdog {
        /// How long it has been silent.
        idle: Duration,
        /// The limit.
        limit: Duration,
    },
}

/// The result of one liveness check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    /// What to report, if anything changed.
    pub change: Option<Change>,
    /// When to check again (`None`: only when an event or heartbeat arrives).
    pub recheck_in: Option<Duration>,
    /// The reference time that was judged, if any.
    pub reference: Option<DateTime<Utc>>,
    /// The stale threshold in force.
    pub threshold: Duration,
}

/// Liveness state of one directory.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    session: Option<String>,
    heartbeat_secs: u64,
    default_heartbeat_secs: u64,
    stale_intervals: u32,
    ended: bool,
    stale: bool,
    watching_since: DateTime<Utc>,
    watchdog: Option<Duration>,
    /// The latest session's last event: (`ts` as written, its time capped
    /// at when it was seen).
    last_event: Option<(String, DateTime<Utc>)>,
    /// The watchdog fired for the current silence.
    fired: bool,
}

impl Liveness {
    pub(crate) fn new(
        watching_since: DateTime<Utc>,
        default_heartbeat_secs: u64,
        stale_intervals: u32,
        watchdog: Option<Duration>,
    ) -> Liveness {
        Liveness {
            session: None,
            heartbeat_secs: default_heartbeat_secs,
            default_heartbeat_secs,
            stale_intervals,
            ended: false,
            stale: false,
            watching_since,
            watchdog,
            last_event: None,
            fired: false,
        }
    }

    /// The `ts` of the latest session's last event seen, if any.
    pub(crate) fn last_event_ts(&self) -> Option<&str> {
        self.last_event.as_ref().map(|(ts, _)| ts.as_str())
    }

    /// The latest session seen, if any.
    pub(crate) fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Learn from an event (delivered, or read at start-up) seen at `seen`.
    /// Events of older sessions change nothing; the first event of a newer
    /// session reopens the directory.
    pub(crate) fn observe(&mut self, event: &Event, seen: DateTime<Utc>) {
        self.switch_to(&event.session);
        if self.session.as_deref() != Some(event.session.as_str()) {
            return;
        }
        let at = parse_ts(&event.ts).map_or(seen, |ts| ts.min(seen));
        if self.last_event.as_ref().is_none_or(|(_, last)| at >= *last) {
            self.last_event = Some((event.ts.clone(), at));
            self.fired = false;
        }
        match &event.body {
            EventBody::SessionStart(s) => self.heartbeat_secs = s.limits.heartbeat_secs.max(1),
            EventBody::SessionEnd(_) => self.ended = true,
            _ => {}
        }
    }

    fn switch_to(&mut self, session: &str) {
        if self.session.as_deref().is_none_or(|s| session > s) {
            self.session = Some(session.to_string());
            self.heartbeat_secs = self.default_heartbeat_secs;
            self.ended = false;
            self.last_event = None;
            self.fired = false;
        }
    }

    /// The stale threshold: `stale_intervals` heartbeat intervals.
    pub(crate) fn threshold(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs) * self.stale_intervals
    }

    /// Judge liveness at `now` given the current heartbeat file.
    pub(crate) fn check(&mut self, now: DateTime<Utc>, heartbeat: Option<&Heartbeat>) -> Check {
        // A heartbeat of a newer session than any event seen: that session
        // has started, and has not ended.
        if let Some(h) = heartbeat.filter(|h| is_session_id(&h.session)) {
            self.switch_to(&h.session);
        }
        let threshold = self.threshold();
        if self.ended {
            // The session said goodbye; its end event is the news, so a
            // pending stale state is dropped silently.
            self.stale = false;
            return Check {
                change: None,
                recheck_in: None,
                reference: None,
                threshold,
            };
        }
        let reference = self.reference(heartbeat);
        // A reference in the future (clock skew) counts as fresh.
        let age = (now - reference).to_std().unwrap_or(Duration::ZERO);
        let (mut change, mut recheck_in) = if age > threshold {
            let change = (!self.stale).then_some(Change::BecameStale);
            self.stale = true;
            // Look again every interval so a resumed heartbeat is noticed
            // even where file notifications are unavailable.
            (change, Duration::from_secs(self.heartbeat_secs))
        } else {
            let change = self.stale.then_some(Change::Recovered);
            self.stale = false;
            // Nothing can change before the reference ages past the limit.
            (change, threshold - age + Duration::from_millis(1))
        };
        // Only a session that exists can be silent: a directory where no
        // sidecar ever came up is a matter for the stale check.
        let watched = self.session.is_some() && !self.stale && !self.fired;
        if let Some(limit) = self.watchdog.filter(|_| watched) {
            let since = self
                .last_event
                .as_ref()
                .map(|(_, at)| *at)
                .or_else(|| self.session.as_deref().and_then(session_start_time))
                .unwrap_or(self.watching_since);
            let idle = (now - since).to_std().unwrap_or(Duration::ZERO);
            if idle > limit {
                if change.is_none() {
                    change = Some(Change::Watchdog { idle, limit });
                    self.fired = true;
                } else {
                    // Report the liveness change first, the watchdog next.
                    recheck_in = Duration::from_millis(1);
                }
            } else {
                recheck_in = recheck_in.min(limit - idle + Duration::from_millis(1));
            }
        }
        Check {
            change,
            recheck_in: Some(recheck_in),
            reference: Some(reference),
            threshold,
        }
    }

    fn reference(&self, heartbeat: Option<&Heartbeat>) -> DateTime<Utc> {
        let current = |h: &&Heartbeat| {
            self.session
                .as_deref()
                .is_none_or(|s| h.session.as_str() >= s)
        };
        if let Some(ts) = heartbeat.filter(current).and_then(|h| parse_ts(&h.ts)) {
            return ts;
        }
        // No heartbeat of this session yet: it was alive when it started.
        self.session
            .as_deref()
            .and_then(session_start_time)
            .unwrap_or(self.watching_since)
    }
}

/// The start time encoded in a session id (`YYYYMMDDTHHMMSS.sssZ-xxxxxx`).
fn session_start_time(session: &str) -> Option<DateTime<Utc>> {
    session.get(..20).and_then(parse_stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_protocol::event::{Limits, OutcomeCounts, SessionEnd, SessionStart};

    const S: &str = "20261125T120000.000Z-0a1b2c";

    fn at(secs: i64) -> DateTime<Utc> {
        session_start_time(S).unwrap() + chrono::Duration::seconds(secs)
    }

    fn beat(secs: i64) -> Heartbeat {
        Heartbeat {
            pid: 7,
            session: S.into(),
            ts: crate::writer::rfc3339_ms(at(secs)),
        }
    }

    fn event(seq: u64, body: EventBody) -> Event {
        Event {
            v: 1,
            session: S.into(),
            seq,
            ts: crate::writer::rfc3339_ms(at(0)),
            prev: None,
            body,
        }
    }

    fn start(heartbeat_secs: u64) -> Event {
        event(
            0,
            EventBody::SessionStart(SessionStart {
                version: "0".into(),
                forge: "memory".into(),
                api_base: None,
                owner: "o".into(),
                repo: "r".into(),
                issue: 1,
                writable: vec![1],
                limits: Limits {
                    max_request_bytes: 1,
                    max_body_bytes: 1,
                    max_writes: 1,
                    http_timeout_secs: 1,
                    heartbeat_secs,
                },
                text: Default::default(),
                pid: 7,
                run: None,
            }),
        )
    }

    #[test]
    fn stale_once_after_three_intervals_then_recovers() {
        let mut l = Liveness::new(at(0), 5, 3, None);
        l.observe(&start(2), at(0));
        assert_eq!(l.threshold(), Duration::from_secs(6));
        let c = l.check(at(5), Some(&beat(0)));
        assert_eq!(c.change, None);
        assert_eq!(c.recheck_in, Some(Duration::from_millis(1001)));
        assert_eq!(
            l.check(at(7), Some(&beat(0))).change,
            Some(Change::BecameStale)
        );
        assert_eq!(l.check(at(8), Some(&beat(0))).change, None, "reported once");
        assert_eq!(
            l.check(at(9), Some(&beat(9))).change,
            Some(Change::Recovered)
        );
        assert_eq!(l.check(at(10), Some(&beat(9))).change, None);
    }

    #[test]
    fn an_ended_session_is_never_stale() {
        let mut l = Liveness::new(at(0), 5, 3, None);
        l.observe(&start(5), at(0));
        l.observe(
            &event(
                1,
                EventBody::SessionEnd(SessionEnd {
                    reason: "SIGTERM".into(),
                    counts: OutcomeCounts::default(),
                    done: true,
                }),
            ),
            at(0),
        );
        let c = l.check(at(3600), Some(&beat(0)));
        assert_eq!((c.change, c.recheck_in), (None, None));
    }

    #[test]
    fn without_heartbeat_the_session_start_is_the_reference() {
        let mut l = Liveness::new(at(100), 5, 3, None);
        l.observe(&start(5), at(0));
        assert_eq!(l.check(at(16), None).change, Some(Change::BecameStale));
    }

    #[test]
    fn an_empty_directory_goes_stale_from_when_watching_began() {
        let mut l = Liveness::new(at(0), 5, 3, None);
        assert_eq!(l.check(at(15), None).change, None);
        assert_eq!(l.check(at(16), None).change, Some(Change::BecameStale));
    }

    #[test]
    fn a_heartbeat_of_a_newer_session_reopens_an_ended_directory() {
        let mut l = Liveness::new(at(0), 5, 3, None);
        l.observe(
            &event(
                0,
                EventBody::SessionEnd(SessionEnd {
                    reason: "SIGTERM".into(),
                    counts: OutcomeCounts::default(),
                    done: false,
                }),
            ),
            at(0),
        );
        let newer = Heartbeat {
            pid: 8,
            session: "20261125T130000.000Z-000001".into(),
            ts: crate::writer::rfc3339_ms(at(0)),
        };
        assert_eq!(
            l.check(at(3600), Some(&newer)).change,
            Some(Change::BecameStale)
        );
        assert_eq!(l.session(), Some(newer.session.as_str()));
    }

    #[test]
    fn the_watchdog_fires_once_per_silence_and_heartbeats_do_not_reset_it() {
        let mut l = Liveness::new(at(0), 5, 3, Some(Duration::from_secs(30)));
        l.observe(&start(5), at(0));
        let c = l.check(at(10), Some(&beat(10)));
        assert_eq!(c.change, None);
        assert!(c.recheck_in.unwrap() <= Duration::from_millis(20_001));
        // Fresh heartbeats, no events: it fires.
        let c = l.check(at(31), Some(&beat(30)));
        assert!(
            matches!(c.change, Some(Change::Watchdog { idle, .. }) if idle == Duration::from_secs(31)),
            "{c:?}"
        );
        assert_eq!(l.check(at(40), Some(&beat(40))).change, None, "once");
        // An event re-arms it.
        let mut op = start(5);
        op.seq = 1;
        op.ts = crate::writer::rfc3339_ms(at(45));
        l.observe(&op, at(45));
        assert_eq!(l.check(at(50), Some(&beat(50))).change, None);
        assert!(matches!(
            l.check(at(76), Some(&beat(75))).change,
            Some(Change::Watchdog { .. })
        ));
    }

    #[test]
    fn an_event_dated_in_the_future_does_not_hold_the_watchdog_off() {
        let mut l = Liveness::new(at(0), 5, 3, Some(Duration::from_secs(30)));
        let mut forged = start(5);
        forged.ts = crate::writer::rfc3339_ms(at(100_000));
        l.observe(&forged, at(1));
        assert!(matches!(
            l.check(at(32), Some(&beat(32))).change,
            Some(Change::Watchdog { .. })
        ));
    }

    #[test]
    fn an_empty_directory_goes_stale_not_watchdog() {
        let mut l = Liveness::new(at(0), 5, 3, Some(Duration::from_secs(2)));
        assert_eq!(l.check(at(10), None).change, None);
        assert_eq!(l.check(at(16), None).change, Some(Change::BecameStale));
    }

    #[test]
    fn a_stale_sidecar_is_stale_not_a_watchdog() {
        let mut l = Liveness::new(at(0), 5, 3, Some(Duration::from_secs(10)));
        l.observe(&start(5), at(0));
        assert_eq!(
            l.check(at(20), Some(&beat(0))).change,
            Some(Change::BecameStale)
        );
        assert_eq!(l.check(at(21), Some(&beat(0))).change, None);
    }
}
