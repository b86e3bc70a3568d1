// SPDX-License-Identifier: Apache-2.0
/*
 * The kernel half of the AF_XDP experiment (issue 12, `afxdp-rx`): steers every UDP datagram to
 * the VXLAN port into the AF_XDP socket bound to the receiving queue, and passes everything
 * else. All the parsing rebuilder's program does in the kernel happens in userspace here, on
 * the frame the kernel copied (or, with a zero-copy driver, DMAed) into the socket's UMEM.
 *
 * Outer headers only: Ethernet, up to two VLAN tags, IPv4 (not a later fragment) or IPv6 with
 * UDP as the first next header. Packet pointers, not bpf_xdp_load_bytes(): the outer headers are
 * always in the first buffer, even of a multi-buffer frame.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Apache-2.0";

#define VXLAN_PORT 4789
#define XSKS_MAX 64

/* Queue index -> AF_XDP socket, filled by afxdp-rx. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XSKS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline int is_vxlan(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u16 proto;
	void *l3;

	if ((void *)(eth + 1) > data_end)
		return 0;
	proto = bpf_ntohs(eth->h_proto);
	l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_tag *tag = l3;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if ((void *)(tag + 1) > data_end)
			return 0;
		proto = bpf_ntohs(tag->proto);
		l3 = tag + 1;
	}
	if (proto == ETH_P_IP) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
			return 0;
		/* A later fragment has no UDP header. */
		if (bpf_ntohs(ip->frag_off) & 0x1FFF)
			return 0;
		udp = (void *)ip + ip->ihl * 4;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP)
			return 0;
		udp = (void *)(ip6 + 1);
	} else {
		return 0;
	}
	if ((void *)(udp + 1) > data_end)
		return 0;
	return udp->dest == bpf_htons(VXLAN_PORT);
}

/* Multi-buffer, like the other programs, so it attaches natively to 9000-MTU veths. */
SEC("xdp.frags")
int xsk_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (!is_vxlan(data, data_end))
		return XDP_PASS;
	/* No socket on this queue: the stack gets the packet (the flags are the fallback action). */
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}
