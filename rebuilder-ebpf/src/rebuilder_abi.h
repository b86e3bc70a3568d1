/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ABI between rebuilder's XDP program and its userspace loader.
 *
 * Everything a loader needs is here: the ring-buffer record layout, the counter indices, the
 * names of the maps and of the read-only globals. The Rust mirror lives in src/lib.rs; build.rs
 * compiles a layout check (generated from the Rust constants) against this header, so the two
 * cannot drift apart silently.
 *
 * This header is included both by the BPF program and by a host-compiled layout check, so it
 * only uses fixed-width types from <linux/types.h>.
 */
#ifndef REBUILDER_ABI_H
#define REBUILDER_ABI_H

#include <linux/types.h>

/* Bumped whenever anything below changes meaning or layout. */
#define RB_ABI_VERSION 1

/* Address families carried in rb_record.family (not AF_*: those differ between systems). */
#define RB_FAMILY_IPV4 4
#define RB_FAMILY_IPV6 6

/*
 * Payload size classes. Ring-buffer reservations must have a size the verifier knows, so a
 * segment is copied into the smallest class that holds it; small segments (most requests and
 * every SYN/FIN) then do not occupy a jumbo-sized slot. Payloads above the largest class are
 * truncated to it and marked by captured_len < wire_len.
 */
#define RB_PAYLOAD_CLASS_0 256
#define RB_PAYLOAD_CLASS_1 1500
#define RB_PAYLOAD_CLASS_2 4096
#define RB_PAYLOAD_CLASS_3 9216
#define RB_PAYLOAD_MAX RB_PAYLOAD_CLASS_3

/*
 * One ring-buffer record: this header, then captured_len payload bytes, then padding up to the
 * size class (the padding is not zeroed: only captured_len bytes are meaningful).
 *
 * Multi-byte fields are in host byte order except the addresses, which are in network order as
 * on the wire (an IPv4 address takes the first 4 bytes, the other 12 are zero).
 */
struct rb_record {
	__u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC, not wall-clock time */
	__u32 vni;          /* VXLAN network identifier (24 bits) */
	__u32 seq;          /* TCP sequence number */
	__u32 ack;          /* TCP acknowledgement number */
	__u32 captured_len; /* payload bytes that follow this header */
	__u32 wire_len;     /* TCP payload length per the inner IP header */
	__u16 src_port;
	__u16 dst_port;
	__u8 family;        /* RB_FAMILY_IPV4 or RB_FAMILY_IPV6 */
	__u8 tcp_flags;     /* the TCP header's flags byte (FIN 0x01 ... CWR 0x80) */
	__u16 reserved0;    /* zero */
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u32 reserved1;    /* zero; pads the header to a multiple of 8 */
};

#define RB_RECORD_HEADER_LEN 72

/*
 * Per-CPU counters, indices into the `counters` map (BPF_MAP_TYPE_PERCPU_ARRAY, __u64 values).
 *
 * Every packet the program sees increments RB_CNT_SEEN and exactly one of the outcome counters
 * (PASSED_*, FILTERED_*, MALFORMED, PUSHED, RING_FULL), so
 *   seen == passed_not_vxlan + passed_outer_fragment + filtered_* + malformed + pushed + ring_full.
 * RB_CNT_TRUNCATED counts pushed records with captured_len < wire_len (a subset of PUSHED) and
 * RB_CNT_PUSHED_BYTES the payload bytes pushed.
 */
enum rb_counter {
	RB_CNT_SEEN = 0,
	RB_CNT_PASSED_NOT_VXLAN = 1,      /* not UDP to a configured VXLAN port: XDP_PASS */
	RB_CNT_PASSED_OUTER_FRAGMENT = 2, /* outer IP fragment to a VXLAN port: XDP_PASS */
	RB_CNT_FILTERED_VNI = 3,          /* VNI not in the allow list */
	RB_CNT_FILTERED_PORT = 4,         /* neither inner TCP port selected */
	RB_CNT_FILTERED_PURE_ACK = 5,     /* no payload and none of SYN/FIN/RST */
	RB_CNT_FILTERED_NOT_TCP = 6,      /* inner frame is not TCP over IPv4/IPv6 */
	RB_CNT_FILTERED_FRAGMENT = 7,     /* inner IP fragment */
	RB_CNT_MALFORMED = 8,             /* bad VXLAN, inner headers or lengths */
	RB_CNT_PUSHED = 9,                /* record written to the ring buffer */
	RB_CNT_RING_FULL = 10,            /* record lost: ring buffer full */
	RB_CNT_TRUNCATED = 11,            /* pushed with captured_len < wire_len */
	RB_CNT_PUSHED_BYTES = 12,         /* payload bytes pushed */
	RB_CNT_MAX = 13,
};

/*
 * Maps (names as in the object; aya finds them by these names).
 *   records      BPF_MAP_TYPE_RINGBUF; size set by the loader (EbpfLoader::set_max_entries),
 *                a power of two multiple of the page size.
 *   counters     BPF_MAP_TYPE_PERCPU_ARRAY, RB_CNT_MAX entries of __u64.
 *   vni_allow    BPF_MAP_TYPE_HASH, key __u32 VNI, value __u8 (any); consulted only when
 *                the global vni_filter is 1.
 *   inner_ports  BPF_MAP_TYPE_ARRAY, RB_PORT_WORDS entries of __u64: a bitmap of TCP ports,
 *                port p is bit (p % 64) of entry (p / 64); consulted only when the global
 *                port_filter is 1. A segment is kept when its source or its destination port
 *                is set.
 */
#define RB_MAP_RECORDS "records"
#define RB_MAP_COUNTERS "counters"
#define RB_MAP_VNI_ALLOW "vni_allow"
#define RB_MAP_INNER_PORTS "inner_ports"
#define RB_VNI_ALLOW_MAX 4096
#define RB_PORT_WORDS 1024
#define RB_RECORDS_DEFAULT_SIZE (4u << 20)

/*
 * Read-only globals (`const volatile`, section .rodata), set before load with
 * EbpfLoader::set_global(name, value, true). The verifier sees their values as constants, so
 * disabled features cost nothing.
 *   vxlan_ports    __u16[RB_VXLAN_PORTS], host order, 0 = unused slot; default {4789}
 *   vni_filter     __u8: 1 = keep only VNIs present in vni_allow; default 0 (all)
 *   port_filter    __u8: 1 = keep only segments with a port set in inner_ports; default 0 (all)
 *   pass_consumed  __u8: 1 = return XDP_PASS instead of XDP_DROP for VXLAN packets (debugging)
 */
#define RB_VXLAN_PORTS 4
#define RB_VXLAN_PORT_DEFAULT 4789

#endif /* REBUILDER_ABI_H */
