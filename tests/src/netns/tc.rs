//! tc `clsact` qdiscs and mirroring filters: the kernel's stand-in for an AWS mirror session.

use super::{feature, Link, Result};

/// Which side of an interface a filter sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// What the interface receives.
    Ingress,
    /// What the interface sends.
    Egress,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// A `clsact` qdisc on an interface; dropping it deletes it with all its filters.
#[derive(Debug)]
pub struct Clsact {
    link: Link,
}

impl Clsact {
    pub fn add(link: &Link) -> Result<Clsact> {
        link.ns()
            .tc(&["qdisc", "add", "dev", link.name(), "clsact"])
            .map_err(feature("the clsact qdisc (CONFIG_NET_SCH_INGRESS)"))?;
        Ok(Clsact { link: link.clone() })
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Copies every frame seen in `direction` to `to`'s transmit path, untouched, as
    /// `action mirred egress mirror` does; the original goes on its way.
    ///
    /// Matches with `u32 match u32 0 0` (everything, `protocol all`: ARP and IPv6 too, as a
    /// mirror session without a filter would) rather than `matchall`, which many kernels
    /// build without.
    pub fn mirror(&self, direction: Direction, to: &str) -> Result<()> {
        self.link
            .ns()
            .tc(&[
                "filter",
                "add",
                "dev",
                self.link.name(),
                direction.as_str(),
                "protocol",
                "all",
                "prio",
                "1",
                "u32",
                "match",
                "u32",
                "0",
                "0",
                "action",
                "mirred",
                "egress",
                "mirror",
                "dev",
                to,
            ])
            .map_err(feature(
                "tc u32 filters with mirred (CONFIG_NET_CLS_U32, CONFIG_NET_ACT_MIRRED)",
            ))?;
        Ok(())
    }

    /// Mirrors both directions of the interface's traffic to `to`, as an AWS mirror session on
    /// an ENI does.
    pub fn mirror_both(&self, to: &str) -> Result<()> {
        self.mirror(Direction::Ingress, to)?;
        self.mirror(Direction::Egress, to)
    }

    /// Deletes every filter, both directions, keeping the qdisc: the traffic flows on,
    /// unmirrored (as when a mirror session is deleted).
    pub fn clear(&self) -> Result<()> {
        for d in [Direction::Ingress, Direction::Egress] {
            self.link
                .ns()
                .tc(&["filter", "del", "dev", self.link.name(), d.as_str()])?;
        }
        Ok(())
    }
}

impl Drop for Clsact {
    fn drop(&mut self) {
        let _ = self
            .link
            .ns()
            .tc(&["qdisc", "del", "dev", self.link.name(), "clsact"]);
    }
}
