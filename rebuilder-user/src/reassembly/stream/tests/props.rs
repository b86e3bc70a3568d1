//! Property tests of a stream: any segmentation, reordering, duplication and overlap of a byte
//! stream reassembles to it, and holes become gaps with the data kept in its place.

use super::*;

/// A stream, its ISN, byte ranges covering it (some overlapping), and the order to send them.
type Pieces = (Vec<u8>, u32, Vec<(usize, usize)>, Vec<usize>);

/// A byte stream cut into overlapping pieces, some duplicated, in a random order.
fn pieces_strategy() -> impl Strategy<Value = Pieces> {
    (
        proptest::collection::vec(any::<u8>(), 0..3000),
        any::<u32>(),
    )
        .prop_flat_map(|(data, isn)| {
            let len = data.len();
            // Cut points partition the stream; extra ranges overlap anywhere.
            let cuts = proptest::collection::vec(0..=len, 0..40);
            let extra = proptest::collection::vec((0..=len, 0..=len), 0..20);
            (Just(data), Just(isn), cuts, extra).prop_flat_map(
                move |(data, isn, mut cuts, extra)| {
                    cuts.push(0);
                    cuts.push(len);
                    cuts.sort_unstable();
                    cuts.dedup();
                    let mut ranges: Vec<(usize, usize)> =
                        cuts.windows(2).map(|w| (w[0], w[1])).collect();
                    ranges.extend(
                        extra
                            .into_iter()
                            .map(|(a, b)| (a.min(b), a.max(b)))
                            .filter(|(a, b)| a < b),
                    );
                    let n = ranges.len();
                    let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
                    (Just(data), Just(isn), Just(ranges), order)
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any segmentation, reordering, duplication and overlap of a stream reassembles to it.
    #[test]
    fn any_segmentation_reassembles_to_the_original((data, isn, ranges, order) in pieces_strategy()) {
        let mut h = Harness::new(&syn(isn), big_cfg());
        for (t, i) in order.iter().enumerate() {
            let (a, b) = ranges[*i];
            h.push(&seg(isn.wrapping_add(1).wrapping_add(a as u32), TcpFlags::ACK, &data[a..b], t as u64 + 1));
        }
        h.push(&seg(isn.wrapping_add(1).wrapping_add(data.len() as u32), TcpFlags::FIN | TcpFlags::ACK, b"", 10_000));
        let o = h.outcome();
        prop_assert_eq!(&o.data, &data);
        prop_assert!(o.gaps.is_empty());
        prop_assert_eq!(o.end, Some(EndReason::Fin));
        prop_assert_eq!(h.stream.buffered(), 0);
        prop_assert_eq!(h.stats.delivered_bytes, data.len() as u64);
        prop_assert_eq!(h.stats.conflict_bytes, 0);
    }

    /// With pieces missing, every delivered byte is at its true offset and every missing byte is
    /// inside a gap: nothing is invented, nothing shifted.
    #[test]
    fn holes_become_gaps_and_data_keeps_its_place(
        (data, isn, ranges, order) in pieces_strategy(),
        drop_mask in any::<u64>(),
    ) {
        let cfg = StreamConfig { reorder_timeout_ns: 5, max_buffered: 4096, max_window: 1 << 20, syn_data: false };
        let mut h = Harness::new(&syn(isn), cfg);
        let mut present = vec![false; data.len()];
        for (t, i) in order.iter().enumerate() {
            if drop_mask & (1 << (i % 64)) != 0 {
                continue;
            }
            let (a, b) = ranges[*i];
            present[a..b].iter_mut().for_each(|p| *p = true);
            h.push(&seg(isn.wrapping_add(1).wrapping_add(a as u32), TcpFlags::ACK, &data[a..b], t as u64 + 1));
        }
        h.close(1_000_000);
        let o = h.outcome();
        prop_assert_eq!(o.end, Some(EndReason::Shutdown));
        // The stream ends where the last received byte ends.
        let last = present.iter().rposition(|p| *p).map_or(0, |i| i + 1);
        prop_assert_eq!(o.data.len(), last);
        let mut in_gap = vec![false; last];
        for (off, len, _) in &o.gaps {
            in_gap[*off as usize..(*off + *len) as usize].iter_mut().for_each(|g| *g = true);
        }
        for i in 0..last {
            if in_gap[i] {
                // A gap may cover bytes that arrived after their hole was skipped: fine, they
                // were counted; but a byte never received must be in a gap.
                continue;
            }
            prop_assert!(present[i], "byte {} delivered but never sent", i);
            prop_assert_eq!(o.data[i], data[i], "byte {} shifted", i);
        }
        prop_assert_eq!(h.stream.buffered(), 0);
    }
}
