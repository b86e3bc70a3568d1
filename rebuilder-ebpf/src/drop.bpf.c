// SPDX-License-Identifier: Apache-2.0
// The ceiling for `cargo xtask bench`: an XDP program that counts and drops every packet and
// does nothing else. rebuilder's program is measured against the rate this one sustains.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drop_count SEC(".maps");

// Multi-buffer, like rebuilder's program, so it attaches natively to the same 9000-MTU veths.
SEC("xdp.frags")
int drop_all(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&drop_count, &key);

	if (n)
		*n += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Apache-2.0";
