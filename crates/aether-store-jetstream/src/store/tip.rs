//! The actor's latest valid version: tip reads, walking back over foreign
//! messages, whole-history scans and the search for a version's sequence.

use std::sync::Arc;

use aether_core::{ActorId, ForeignReason, StoreError, Version};

use super::read::Reader;
use super::{Inner, RawMsg};
use crate::cache::Tip;

/// Messages a tip read steps back over (foreign messages after the latest
/// valid event) before it reads the whole history instead.
const WALK_BACK: usize = 16;

impl Inner {
    /// The actor's latest *valid* event and the last message on its subject
    /// (the expected sequence of the next append), from the server; refreshes
    /// the cache.
    ///
    /// One direct get when the subject has not changed since the cache was
    /// filled; otherwise the last message and the one before it, which agree
    /// for an intact tip. Foreign messages at the tip are stepped over (and
    /// reported); when the messages before the tip do not settle which one is
    /// valid, the whole history is read under the trust rule.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] under the strict policy when the tip is
    /// foreign; transport errors.
    pub(crate) async fn tip(
        self: &Arc<Self>,
        actor: &ActorId,
        subject: &str,
    ) -> Result<Tip, StoreError> {
        let Some(last) = self.last_msg(&self.events, subject).await? else {
            return Ok(Tip::EMPTY);
        };
        if let Some(t) = self.cache.get(actor)
            && t.last == last.seq
        {
            return Ok(t);
        }
        let tip = match self.walk_back(actor, subject, last).await? {
            Some(tip) => tip,
            None => self.scan(actor).await?,
        };
        self.cache.observe(actor, tip);
        Ok(tip)
    }

    /// Steps back from the subject's last message to the latest valid event;
    /// `None` when the messages do not settle it within [`WALK_BACK`] steps.
    pub(crate) async fn walk_back(
        &self,
        actor: &ActorId,
        subject: &str,
        last: RawMsg,
    ) -> Result<Option<Tip>, StoreError> {
        let last_seq = last.seq;
        let mut cur = last;
        let mut judged = self.judge(actor, &cur);
        let mut steps = 0;
        loop {
            let event = match judged {
                Ok(e) => e,
                Err(reason) => {
                    self.foreign(actor, cur.seq, reason)?;
                    steps += 1;
                    let Some(p) = self.prev_msg(subject, cur.seq).await? else {
                        // Nothing valid at all.
                        return Ok(Some(Tip {
                            last: last_seq,
                            ..Tip::EMPTY
                        }));
                    };
                    if steps > WALK_BACK {
                        return Ok(None);
                    }
                    judged = self.judge(actor, &p);
                    cur = p;
                    continue;
                }
            };
            // The nearest earlier envelope of this actor (messages that are
            // not one cannot decide the version).
            let mut before = cur.seq;
            let prev = loop {
                steps += 1;
                if steps > WALK_BACK {
                    return Ok(None);
                }
                match self.prev_msg(subject, before).await? {
                    None => break None,
                    Some(p) => match self.judge(actor, &p) {
                        Ok(pe) => break Some((p, pe)),
                        Err(_) => before = p.seq,
                    },
                }
            };
            let valid = Tip {
                version: event.version.get(),
                seq: cur.seq,
                last: last_seq,
            };
            match prev {
                None if event.version == Version::FIRST => return Ok(Some(valid)),
                None => return Ok(None),
                Some((_, pe)) if pe.version.next() == Some(event.version) => {
                    return Ok(Some(valid));
                }
                Some((p, pe)) if event.version <= pe.version => {
                    // A repeated or backward version after `pe`.
                    self.foreign(
                        actor,
                        cur.seq,
                        ForeignReason::OutOfOrder {
                            expected: pe.version.next().unwrap_or(pe.version),
                            found: event.version,
                        },
                    )?;
                    cur = p;
                    judged = Ok(pe);
                }
                // A gap: which side is foreign takes the whole history.
                Some(_) => return Ok(None),
            }
        }
    }

    /// The latest valid version of `actor` among its messages before stream
    /// sequence `before`, by reading its history under the trust rule (the
    /// feed's exact start for an actor it first meets past position 0).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] under the strict policy; transport errors.
    pub(crate) async fn valid_version_before(
        self: &Arc<Self>,
        actor: &ActorId,
        before: u64,
    ) -> Result<Version, StoreError> {
        let mut reader = Reader::new(self.clone(), actor.clone(), Version::ZERO);
        let mut last = Version::ZERO;
        while let Some(item) = Box::pin(reader.next()).await {
            item?;
            match reader.admitted {
                Some(t) if t.seq < before => last = Version::new(t.version),
                _ => break,
            }
        }
        Ok(last)
    }

    /// The latest valid event by reading the whole history under the trust rule.
    pub(crate) async fn scan(self: &Arc<Self>, actor: &ActorId) -> Result<Tip, StoreError> {
        let mut reader = Reader::new(self.clone(), actor.clone(), Version::ZERO);
        while let Some(item) = Box::pin(reader.next()).await {
            item?;
        }
        Ok(reader.tip().unwrap_or(Tip::EMPTY))
    }

    /// A stream sequence at or before the one of version `from` of the actor
    /// (exactly it when the history is intact), given its valid tip.
    pub(crate) async fn seek(&self, subject: &str, from: u64, tip: Tip) -> Result<u64, StoreError> {
        if from >= tip.version {
            return Ok(tip.seq);
        }
        // Version `from` lies at least `tip.version - from` messages before
        // the tip's event (more if foreign messages lie between).
        let guess = tip.seq.saturating_sub(tip.version - from).max(1);
        let version_at = |m: &RawMsg| self.event_version(m).ok().map(Version::get);
        let Some(m) = self.next_msg(&self.events, subject, guess).await? else {
            return Ok(1);
        };
        if m.seq == guess && version_at(&m) == Some(from) {
            return Ok(guess);
        }
        // Binary search over [lo, hi] for the message with version `from`;
        // `lo` only passes messages older than `from`, so it stays a safe start.
        let (mut lo, mut hi) = (1u64, guess);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let Some(m) = self.next_msg(&self.events, subject, mid).await? else {
                break;
            };
            let Some(v) = version_at(&m) else { break };
            if v == from {
                return Ok(m.seq);
            }
            if v < from {
                lo = m.seq + 1;
            } else if mid == 0 {
                break;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }
}
