//! Bounded-delay batching for a live capture thread: how long its next receive may block,
//! when it hands what it holds to the workers, and when it lets datagrams gather first.
//!
//! Under a moderate rate a socket read returns as soon as one datagram is there, so a capture
//! thread that reads and flushes in a tight loop pays a system call and a worker wake-up (a
//! futex and a context switch) for every one or two packets: measured on the UDP path, 0.3
//! system calls and 0.2 context switches per packet, more than twice offline's CPU per packet,
//! and queues full of tiny batches. Holding segments for at most [`Gather::max_delay`] and
//! pausing briefly after a thin read trades a bounded latency (nothing waits longer than
//! `max_delay` in the capture thread) for reads and hand-overs of many packets each — the
//! userspace side of what the XDP program does with `BPF_RB_NO_WAKEUP`.
//!
//! Pure: it is given the clock and the outcome of each read, so it is tested without sockets.
//! It touches nothing; the capture loop acts on its answers.

use std::time::{Duration, Instant};

/// What the capture loop does after a receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Hand every held segment to the workers now.
    Flush,
    /// Read again at once: the socket had plenty queued.
    Read,
    /// Sleep this long before reading again, so that datagrams gather (a thin read).
    Pause(Duration),
}

#[derive(Clone, Debug)]
pub struct Gather {
    max_delay: Duration,
    pause: Duration,
    /// When the oldest segment not yet handed over was taken.
    oldest: Option<Instant>,
}

impl Gather {
    /// `max_delay`: the longest a segment waits in the capture thread; `pause`: the sleep after
    /// a thin read (at most what is left of `max_delay`).
    pub fn new(max_delay: Duration, pause: Duration) -> Self {
        Self {
            max_delay,
            pause,
            oldest: None,
        }
    }

    /// How long the next receive may block: `idle` when nothing is held, else not at all (the
    /// pauses do the waiting while segments are held, and a read that finds nothing hands them
    /// over). One blocking timeout only, so a socket's receive timeout is set once, not before
    /// every read.
    pub fn wait(&self, idle: Duration) -> Duration {
        match self.oldest {
            None => idle,
            Some(_) => Duration::ZERO,
        }
    }

    /// After a receive that took `got` packets of at most `batch`; `holding`: whether segments
    /// wait to be handed over after it (full worker batches go on their own).
    pub fn after_receive(&mut self, got: usize, batch: usize, holding: bool, now: Instant) -> Step {
        if !holding {
            self.oldest = None;
        } else if self.oldest.is_none() {
            self.oldest = Some(now);
        }
        let due = self
            .oldest
            .map(|t| self.max_delay.saturating_sub(now.duration_since(t)));
        match due {
            // Quiet link, or the oldest is due: nothing is gained by holding on.
            Some(left) if got == 0 || left.is_zero() => {
                self.oldest = None;
                Step::Flush
            }
            _ if got == 0 || got.saturating_mul(4) >= batch => Step::Read,
            Some(left) => Step::Pause(self.pause.min(left)),
            None => Step::Pause(self.pause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn g() -> Gather {
        Gather::new(MS, Duration::from_micros(200))
    }

    #[test]
    fn nothing_held_blocks_for_the_idle_wait() {
        let g = g();
        assert_eq!(g.wait(Duration::from_millis(200)), 200 * MS);
    }

    #[test]
    fn a_thin_read_pauses_and_held_segments_never_block_a_read() {
        let mut g = g();
        let t0 = Instant::now();
        assert_eq!(
            g.after_receive(3, 64, true, t0),
            Step::Pause(Duration::from_micros(200))
        );
        assert_eq!(g.wait(Duration::from_secs(1)), Duration::ZERO);
        // The pause never outlasts the deadline.
        assert_eq!(
            g.after_receive(2, 64, true, t0 + Duration::from_micros(900)),
            Step::Pause(Duration::from_micros(100))
        );
    }

    #[test]
    fn held_segments_go_when_due_or_when_the_link_is_quiet() {
        let mut g = g();
        let t0 = Instant::now();
        assert_eq!(g.after_receive(40, 64, true, t0), Step::Read);
        assert_eq!(g.after_receive(40, 64, true, t0 + MS), Step::Flush);
        assert_eq!(g.wait(Duration::from_secs(1)), Duration::from_secs(1));
        assert!(matches!(
            g.after_receive(1, 64, true, t0 + 2 * MS),
            Step::Pause(_)
        ));
        assert_eq!(g.after_receive(0, 64, true, t0 + 2 * MS), Step::Flush);
    }

    #[test]
    fn a_full_read_reads_again_and_nothing_held_never_flushes() {
        let mut g = g();
        let t0 = Instant::now();
        assert_eq!(g.after_receive(64, 64, false, t0), Step::Read);
        assert_eq!(g.after_receive(0, 64, false, t0), Step::Read);
        assert_eq!(
            g.after_receive(1, 64, false, t0),
            Step::Pause(Duration::from_micros(200))
        );
        assert_eq!(g.wait(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
