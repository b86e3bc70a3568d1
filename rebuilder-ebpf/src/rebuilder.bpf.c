// SPDX-License-Identifier: Apache-2.0
/*
 * rebuilder's XDP program: strips the VXLAN encapsulation of AWS VPC Traffic Mirroring packets
 * in the kernel and hands the inner TCP segments to userspace through a ring buffer.
 *
 * Ethernet (VLAN) -> IPv4/IPv6 -> UDP to a VXLAN port -> VXLAN -> Ethernet (VLAN) -> IPv4/IPv6
 * -> TCP. Anything that is not UDP to a configured VXLAN port passes untouched; everything that
 * is, is consumed (XDP_DROP, or XDP_PASS when debugging) and counted under exactly one outcome.
 *
 * The program is multi-buffer (xdp.frags) so that it attaches natively to interfaces whose MTU
 * exceeds a page. Such packets need not be linear, so every header goes through load(), which
 * copies it from the frame's linear part when it lies there and otherwise asks
 * bpf_xdp_load_bytes() (which walks the fragments): the parse is identical for linear and
 * non-linear packets, and the common linear case costs no helper call.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "rebuilder_abi.h"

char LICENSE[] SEC("license") = "Apache-2.0";

/* Read-only configuration; see rebuilder_abi.h. */
const volatile __u16 vxlan_ports[RB_VXLAN_PORTS] = { RB_VXLAN_PORT_DEFAULT };
const volatile __u8 vni_filter = 0;
const volatile __u8 port_filter = 0;
const volatile __u8 pass_consumed = 0;
/*
 * Wake the reader only once this many bytes wait in the ring (0: on every record, the kernel's
 * default). A wake-up is an inter-processor interrupt per record, which on a busy interface
 * costs more than the parsing; with a threshold the reader polls on a short timer instead.
 */
const volatile __u32 wakeup_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RB_RECORDS_DEFAULT_SIZE);
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RB_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RB_VNI_ALLOW_MAX);
	__type(key, __u32);
	__type(value, __u8);
} vni_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RB_PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} inner_ports SEC(".maps");

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_QINQ_ 0x9100 /* pre-standard QinQ outer tag */
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define IP_MF_ 0x2000
#define IP_OFFSET_ 0x1FFF
#define VXLAN_FLAG_I 0x08
#define TCP_FLAG_FIN_ 0x01
#define TCP_FLAG_SYN_ 0x02
#define TCP_FLAG_RST_ 0x04
#define VLAN_MAX 2
#define IPV6_EXT_MAX 4

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct vxlan {
	__u8 flags;
	__u8 reserved0[3];
	__u8 vni[3];
	__u8 reserved1;
};

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; /* only meaningful in a fragment header */
	__u32 reserved;
};

/* Fragment state of an IP packet. */
enum frag {
	FRAG_NONE = 0,
	FRAG_FIRST, /* offset 0, more fragments follow: has the L4 header, not all of the data */
	FRAG_LATER, /* offset > 0: no L4 header at all */
};

/* What an IP header parse yields. */
struct l3 {
	__u32 l4_off; /* where the transport header starts */
	__u32 l4_len; /* transport header plus payload, per the IP header */
	__u8 proto;
	__u8 frag;
	__u8 family;
	__u8 src[16];
	__u8 dst[16];
};

/* Result of a parse step: the outcome if it did not succeed. */
#define PARSE_OK 0
#define PARSE_SHORT (-1) /* ran past the end of the frame (or of the VXLAN payload) */
#define PARSE_BAD (-2)   /* bytes present but not valid */

static __always_inline void count_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	/* Per-CPU slot and XDP runs with preemption off: a plain add cannot race. */
	if (v)
		*v += n;
}

static __always_inline void count(__u32 idx)
{
	count_add(idx, 1);
}

/*
 * Headers that start this far into the frame are read through bpf_xdp_load_bytes() even when
 * the frame is linear. The bound is what lets the verifier accept ctx->data + off. Real header
 * stacks (VLAN tags, IP options, a few small IPv6 extension headers, outer and inner) stay
 * under 300 bytes; a deeper one (IPv6 extension headers may reach 2 KB each) is parsed all the
 * same, only through the helper.
 */
#define DIRECT_OFF_MAX 1024

/*
 * Loads [off, off + len) if it lies within [0, end). Bytes in the frame's linear part (all of
 * them for a frame that fits a page, the head of a multi-buffer one) are copied straight from
 * ctx->data; anything past it goes through bpf_xdp_load_bytes(), which walks the fragments.
 * Both read the same bytes, so the parse is the same for linear and non-linear frames; the
 * direct copy only saves the helper call, which was eight calls and half of the program's time
 * per packet.
 */
static __always_inline int load(struct xdp_md *ctx, __u32 off, __u32 end, void *dst, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (off > end || end - off < len)
		return PARSE_SHORT;
	if (off <= DIRECT_OFF_MAX) {
		void *p = data + off;

		if (p + len <= data_end) {
			__builtin_memcpy(dst, p, len);
			return PARSE_OK;
		}
	}
	if (bpf_xdp_load_bytes(ctx, off, dst, len))
		return PARSE_SHORT;
	return PARSE_OK;
}

/* Ethernet header and up to VLAN_MAX 802.1Q/802.1ad tags; yields the ethertype (host order). */
static __always_inline int parse_eth(struct xdp_md *ctx, __u32 *off, __u32 end, __u16 *proto)
{
	struct ethhdr eth = {};
	struct vlan_tag tag = {};
	__u16 p = 0;

	if (load(ctx, *off, end, &eth, sizeof(eth)))
		return PARSE_SHORT;
	*off += sizeof(eth);
	p = bpf_ntohs(eth.h_proto);
#pragma unroll
	for (int i = 0; i < VLAN_MAX; i++) {
		if (p != ETH_P_8021Q_ && p != ETH_P_8021AD_ && p != ETH_P_QINQ_)
			break;
		if (load(ctx, *off, end, &tag, sizeof(tag)))
			return PARSE_SHORT;
		*off += sizeof(tag);
		p = bpf_ntohs(tag.proto);
	}
	*proto = p;
	return PARSE_OK;
}

static __always_inline int parse_ipv4(struct xdp_md *ctx, __u32 off, __u32 end, struct l3 *l3)
{
	struct iphdr ip = {};
	__u32 hlen = 0, tot = 0;
	__u16 frag = 0;

	if (load(ctx, off, end, &ip, sizeof(ip)))
		return PARSE_SHORT;
	if (ip.version != 4 || ip.ihl < 5)
		return PARSE_BAD;
	hlen = ip.ihl * 4;
	tot = bpf_ntohs(ip.tot_len);
	if (tot < hlen)
		return PARSE_BAD;
	frag = bpf_ntohs(ip.frag_off);
	l3->frag = (frag & IP_OFFSET_) ? FRAG_LATER : (frag & IP_MF_) ? FRAG_FIRST : FRAG_NONE;
	l3->proto = ip.protocol;
	l3->l4_off = off + hlen;
	l3->l4_len = tot - hlen;
	l3->family = RB_FAMILY_IPV4;
	__builtin_memset(l3->src, 0, sizeof(l3->src));
	__builtin_memset(l3->dst, 0, sizeof(l3->dst));
	__builtin_memcpy(l3->src, &ip.saddr, 4);
	__builtin_memcpy(l3->dst, &ip.daddr, 4);
	return PARSE_OK;
}

static __always_inline int parse_ipv6(struct xdp_md *ctx, __u32 off, __u32 end, struct l3 *l3)
{
	struct ipv6hdr ip = {};
	struct ipv6_ext ext = {};
	__u32 len = 0, hlen = 0;
	__u8 next = 0;

	if (load(ctx, off, end, &ip, sizeof(ip)))
		return PARSE_SHORT;
	if (ip.version != 6)
		return PARSE_BAD;
	len = bpf_ntohs(ip.payload_len);
	next = ip.nexthdr;
	off += sizeof(ip);
	l3->frag = FRAG_NONE;
	/* Extension headers a TCP segment may carry; anything else ends the walk. */
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS &&
		    next != IPPROTO_FRAGMENT)
			break;
		if (load(ctx, off, end, &ext, sizeof(ext)))
			return PARSE_SHORT;
		if (next == IPPROTO_FRAGMENT) {
			__u16 fo = bpf_ntohs(ext.frag_off);

			hlen = 8;
			/* An atomic fragment (offset 0, no more) is a whole packet. */
			if (fo & 0xFFF8)
				l3->frag = FRAG_LATER;
			else if (fo & 1)
				l3->frag = FRAG_FIRST;
		} else {
			hlen = ((__u32)ext.hdrlen + 1) * 8;
		}
		if (len < hlen)
			return PARSE_BAD;
		len -= hlen;
		off += hlen;
		next = ext.nexthdr;
	}
	l3->proto = next;
	l3->l4_off = off;
	l3->l4_len = len;
	l3->family = RB_FAMILY_IPV6;
	__builtin_memcpy(l3->src, &ip.saddr, 16);
	__builtin_memcpy(l3->dst, &ip.daddr, 16);
	return PARSE_OK;
}

static __always_inline int parse_ip(struct xdp_md *ctx, __u16 proto, __u32 off, __u32 end,
				    struct l3 *l3)
{
	if (proto == ETH_P_IP_)
		return parse_ipv4(ctx, off, end, l3);
	return parse_ipv6(ctx, off, end, l3);
}

static __always_inline int is_vxlan_port(__u16 port)
{
#pragma unroll
	for (int i = 0; i < RB_VXLAN_PORTS; i++) {
		__u16 p = vxlan_ports[i];

		if (p != 0 && p == port)
			return 1;
	}
	return 0;
}

static __always_inline int port_selected(__u16 port)
{
	__u32 word = port >> 6;
	__u64 *bits = bpf_map_lookup_elem(&inner_ports, &word);

	return bits && ((*bits >> (port & 63)) & 1);
}

static __always_inline int consumed(void)
{
	return pass_consumed ? XDP_PASS : XDP_DROP;
}

/*
 * Reserves a record of a fixed size class, fills it and submits it. The class is a constant
 * after inlining, which is what the verifier needs for bpf_ringbuf_reserve(); the bound on cap
 * proves the copy stays inside the reservation.
 */
static __always_inline __u32 push(struct xdp_md *ctx, const struct rb_record *hdr, __u32 payload_off,
				  __u32 cap, const __u32 class_len)
{
	struct rb_record *rec;

	if (cap > class_len)
		return RB_CNT_MALFORMED; /* unreachable: the caller picked the class */
	rec = bpf_ringbuf_reserve(&records, sizeof(struct rb_record) + class_len, 0);
	if (!rec)
		return RB_CNT_RING_FULL;
	__builtin_memcpy(rec, hdr, sizeof(*hdr));
	if (cap > 0 && bpf_xdp_load_bytes(ctx, payload_off, (void *)(rec + 1), cap)) {
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		return RB_CNT_MALFORMED;
	}
	if (wakeup_bytes) {
		/*
		 * Wake once, as the waiting bytes cross the threshold (this record's reservation,
		 * ring header included, is already counted in them), not on every record while the
		 * reader catches up: each forced wake-up is an irq_work, and a burst would queue
		 * one per record until the reader has drained. Concurrent producers may both miss
		 * the crossing; the reader's poll timer (RING_POLL) bounds that wait.
		 */
		const __u64 span = (sizeof(struct rb_record) + class_len + 8 + 7) & ~7ULL;
		__u64 avail = bpf_ringbuf_query(&records, BPF_RB_AVAIL_DATA);

		bpf_ringbuf_submit(rec, avail >= wakeup_bytes && avail < wakeup_bytes + span ?
						BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	} else {
		bpf_ringbuf_submit(rec, 0);
	}
	return RB_CNT_PUSHED;
}

/* Parses one packet and returns its outcome counter. */
static __always_inline __u32 process(struct xdp_md *ctx)
{
	__u32 buff_len = (__u32)bpf_xdp_get_buff_len(ctx);
	__u32 off = 0, end = 0, udp_end = 0, ip_end = 0, payload_off = 0, wire = 0, avail = 0;
	__u32 cap = 0, vni = 0;
	/*
	 * Everything starts initialised: clang may otherwise spill an undefined value on a path
	 * where it does not matter, and the verifier rejects any read of an uninitialised register.
	 */
	struct rb_record hdr = {};
	struct vxlan vx = {};
	struct udphdr udp = {};
	struct tcphdr tcp = {};
	struct l3 l3 = {};
	__u16 proto = 0;
	__u8 flags = 0;
	int err = 0;

	/* Outer headers: anything unexpected means "not ours" and passes untouched. */
	if (parse_eth(ctx, &off, buff_len, &proto))
		return RB_CNT_PASSED_NOT_VXLAN;
	if (proto != ETH_P_IP_ && proto != ETH_P_IPV6_)
		return RB_CNT_PASSED_NOT_VXLAN;
	if (parse_ip(ctx, proto, off, buff_len, &l3))
		return RB_CNT_PASSED_NOT_VXLAN;
	/* A later fragment has no UDP header, so nothing says whether it is VXLAN. */
	if (l3.proto != IPPROTO_UDP || l3.frag == FRAG_LATER)
		return RB_CNT_PASSED_NOT_VXLAN;
	if (load(ctx, l3.l4_off, buff_len, &udp, sizeof(udp)))
		return RB_CNT_PASSED_NOT_VXLAN;
	if (!is_vxlan_port(bpf_ntohs(udp.dest)))
		return RB_CNT_PASSED_NOT_VXLAN;
	/* Cannot be reassembled here; the stack gets the chance. */
	if (l3.frag == FRAG_FIRST)
		return RB_CNT_PASSED_OUTER_FRAGMENT;

	/*
	 * From here on the packet is ours. The VXLAN payload ends where the UDP datagram ends,
	 * which may be before the frame ends (Ethernet padding).
	 */
	ip_end = l3.l4_off + l3.l4_len;
	udp_end = l3.l4_off + bpf_ntohs(udp.len);
	if (bpf_ntohs(udp.len) < sizeof(udp) + sizeof(vx) || udp_end > ip_end || ip_end > buff_len)
		return RB_CNT_MALFORMED;
	end = udp_end;
	off = l3.l4_off + sizeof(udp);
	if (load(ctx, off, end, &vx, sizeof(vx)))
		return RB_CNT_MALFORMED;
	if (!(vx.flags & VXLAN_FLAG_I))
		return RB_CNT_MALFORMED;
	off += sizeof(vx);
	vni = ((__u32)vx.vni[0] << 16) | ((__u32)vx.vni[1] << 8) | vx.vni[2];
	if (vni_filter && !bpf_map_lookup_elem(&vni_allow, &vni))
		return RB_CNT_FILTERED_VNI;

	/* Inner frame: what AWS copied from the mirrored ENI. */
	if (parse_eth(ctx, &off, end, &proto))
		return RB_CNT_MALFORMED;
	if (proto != ETH_P_IP_ && proto != ETH_P_IPV6_)
		return RB_CNT_FILTERED_NOT_TCP;
	err = parse_ip(ctx, proto, off, end, &l3);
	if (err)
		return RB_CNT_MALFORMED;
	if (l3.frag != FRAG_NONE)
		return RB_CNT_FILTERED_FRAGMENT;
	if (l3.proto != IPPROTO_TCP)
		return RB_CNT_FILTERED_NOT_TCP;
	if (load(ctx, l3.l4_off, end, &tcp, sizeof(tcp)))
		return RB_CNT_MALFORMED;
	if (tcp.doff < 5 || l3.l4_len < (__u32)tcp.doff * 4)
		return RB_CNT_MALFORMED;

	if (port_filter && !port_selected(bpf_ntohs(tcp.source)) &&
	    !port_selected(bpf_ntohs(tcp.dest)))
		return RB_CNT_FILTERED_PORT;

	/* The flags byte follows the data-offset byte in the TCP header. */
	flags = ((__u8 *)&tcp)[13];
	payload_off = l3.l4_off + (__u32)tcp.doff * 4;
	wire = l3.l4_len - (__u32)tcp.doff * 4;
	if (wire == 0 && !(flags & (TCP_FLAG_SYN_ | TCP_FLAG_FIN_ | TCP_FLAG_RST_)))
		return RB_CNT_FILTERED_PURE_ACK;

	/* A truncated frame (AWS PacketLength, MTU) holds less than the inner IP header says. */
	avail = end > payload_off ? end - payload_off : 0;
	cap = wire < avail ? wire : avail;
	if (cap > RB_PAYLOAD_MAX)
		cap = RB_PAYLOAD_MAX;

	hdr.ts_ns = bpf_ktime_get_ns();
	hdr.vni = vni;
	hdr.seq = bpf_ntohl(tcp.seq);
	hdr.ack = bpf_ntohl(tcp.ack_seq);
	hdr.captured_len = cap;
	hdr.wire_len = wire;
	hdr.src_port = bpf_ntohs(tcp.source);
	hdr.dst_port = bpf_ntohs(tcp.dest);
	hdr.family = l3.family;
	hdr.tcp_flags = flags;
	hdr.reserved0 = 0;
	hdr.reserved1 = 0;
	__builtin_memcpy(hdr.src_addr, l3.src, 16);
	__builtin_memcpy(hdr.dst_addr, l3.dst, 16);

	if (cap <= RB_PAYLOAD_CLASS_0)
		err = push(ctx, &hdr, payload_off, cap, RB_PAYLOAD_CLASS_0);
	else if (cap <= RB_PAYLOAD_CLASS_1)
		err = push(ctx, &hdr, payload_off, cap, RB_PAYLOAD_CLASS_1);
	else if (cap <= RB_PAYLOAD_CLASS_2)
		err = push(ctx, &hdr, payload_off, cap, RB_PAYLOAD_CLASS_2);
	else
		err = push(ctx, &hdr, payload_off, cap, RB_PAYLOAD_CLASS_3);
	if (err == RB_CNT_PUSHED) {
		if (cap < wire)
			count(RB_CNT_TRUNCATED);
		if (cap)
			count_add(RB_CNT_PUSHED_BYTES, cap);
	}
	return err;
}

SEC("xdp.frags")
int rebuilder_xdp(struct xdp_md *ctx)
{
	__u32 outcome = process(ctx);

	count(RB_CNT_SEEN);
	count(outcome);
	if (outcome == RB_CNT_PASSED_NOT_VXLAN || outcome == RB_CNT_PASSED_OUTER_FRAGMENT)
		return XDP_PASS;
	return consumed();
}
