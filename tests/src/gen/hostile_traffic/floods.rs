//! Floods: SYNs from many sources that never carry data, and many concurrent connections
//! whose request head never completes. What they test: per-flow state stays bounded and is
//! counted, never replayed.

use super::builder::{attacker, Builder};
use super::{Expect, VICTIM_HOST};
use crate::error::GenError;

impl Builder<'_> {
    pub(super) fn syn_flood(&mut self) -> Result<(), GenError> {
        let n = self.scale.syn_flood;
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
        }
        match self.scale.syn_flood_budget {
            Some(budget) => {
                self.args.extend(["--memory-budget".into(), budget.into()]);
                // The flood is bigger than the budget: flows are evicted, none in the middle
                // of a request (SYN-only flows hold none, and legitimate ones are recent).
                self.expect("flow:evicted", Expect::AtLeast(1));
                self.about = format!("{n} SYNs, no data, memory budget {budget}");
            }
            None => {
                self.expect("flow:evicted", Expect::AtLeast(1));
                self.about = format!("{n} SYNs, no data");
            }
        }
        Ok(())
    }

    pub(super) fn half_open(&mut self) -> Result<(), GenError> {
        let n = self.scale.half_open;
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let head = format!(
                "GET /half-open/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\nUser-Agent: slow\r\nX-Hold: "
            );
            self.frames.push(c.send(ts + 50_000, head.as_bytes())?);
        }
        // Still open when the capture ends: each partial request is counted, none replayed.
        self.expect("request:incomplete", Expect::Exactly(n as u64));
        self.about = format!("{n} concurrent connections, each a partial head, never finished");
        Ok(())
    }
}
