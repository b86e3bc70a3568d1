# Traffic mirroring towards rebuilder: one filter (TCP in the chosen directions and ports), one
# target (the rebuilder NLB) and one session per source ENI.
#
# A packet no rule accepts is not mirrored ("If you don't add any rules, then no traffic is
# mirrored", AWS Traffic Mirroring guide, traffic mirror filter concepts), so the filter holds
# accept rules only: a final reject-everything rule would change nothing and cost one of the
# 10 rules a filter may hold (both directions together; Traffic Mirroring quotas).

locals {
  directions = concat(
    var.mirror_ingress ? ["ingress"] : [],
    var.mirror_egress ? ["egress"] : [],
  )

  families = concat(
    [{ name = "ipv4", cidr = "0.0.0.0/0" }],
    var.mirror_ipv6 ? [{ name = "ipv6", cidr = "::/0" }] : [],
  )

  # An empty list of ranges means every port: one rule without a port range.
  port_ranges = {
    ingress = length(var.ingress_destination_port_ranges) > 0 ? var.ingress_destination_port_ranges : [null]
    egress  = length(var.egress_destination_port_ranges) > 0 ? var.egress_destination_port_ranges : [null]
  }

  # Rule numbers: accepted TCP from 100, DNS from 900. AWS evaluates them in ascending order
  # per direction.
  tcp_rules = flatten([
    for direction in local.directions : [
      for i, range in local.port_ranges[direction] : [
        for f, family in local.families : {
          key       = "${direction}-tcp-${i}-${family.name}"
          direction = direction
          number    = 100 + i * 10 + f
          action    = "accept"
          protocol  = 6
          cidr      = family.cidr
          from_port = range == null ? null : range.from
          to_port   = range == null ? null : range.to
          what      = range == null ? "TCP, every port" : "TCP to ports ${range.from}-${range.to}"
        }
      ]
    ]
  ])

  dns_directions = var.mirror_dns ? local.directions : []

  dns_rules = flatten([
    for direction in local.dns_directions : [
      for f, family in local.families : {
        key       = "${direction}-dns-${family.name}"
        direction = direction
        number    = 900 + f
        action    = "accept"
        protocol  = 17
        cidr      = family.cidr
        from_port = 53
        to_port   = 53
        what      = "DNS (UDP 53)"
      }
    ]
  ])


  rules = { for r in concat(local.tcp_rules, local.dns_rules) : r.key => r }

  rule_counts = {
    for direction in ["ingress", "egress"] :
    direction => length([for r in values(local.rules) : r if r.direction == direction])
  }

  # AWS counts a filter's rules across both directions: 10 at most (Traffic Mirroring quotas,
  # "Maximum number of filter rules per filter").
  rule_quota = 10
  rule_total = length(local.rules)
}

resource "aws_ec2_traffic_mirror_filter" "this" {
  description      = "${var.name}: TCP for rebuilder"
  network_services = var.mirror_dns ? ["amazon-dns"] : []

  tags = merge(var.tags, { Name = var.name })

  lifecycle {
    precondition {
      condition     = length(local.directions) > 0
      error_message = "Enable at least one of mirror_ingress and mirror_egress."
    }
    precondition {
      condition     = local.rule_total <= local.rule_quota
      error_message = "A traffic mirror filter takes at most ${local.rule_quota} rules, both directions together; these settings need ${local.rule_total} (${local.rule_counts["ingress"]} ingress, ${local.rule_counts["egress"]} egress: port ranges x address families, plus DNS when asked). Use fewer or wider port ranges."
    }
  }
}

resource "aws_ec2_traffic_mirror_filter_rule" "this" {
  for_each = local.rules

  description              = "${var.name}: ${each.value.action} ${each.value.what}"
  traffic_mirror_filter_id = aws_ec2_traffic_mirror_filter.this.id
  traffic_direction        = each.value.direction
  rule_number              = each.value.number
  rule_action              = each.value.action
  protocol                 = each.value.protocol
  source_cidr_block        = each.value.cidr
  destination_cidr_block   = each.value.cidr

  dynamic "destination_port_range" {
    for_each = each.value.from_port == null ? [] : [each.value]
    content {
      from_port = destination_port_range.value.from_port
      to_port   = destination_port_range.value.to_port
    }
  }
}

resource "aws_ec2_traffic_mirror_target" "this" {
  description               = "${var.name}: rebuilder NLB"
  network_load_balancer_arn = var.target_nlb_arn

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_ec2_traffic_mirror_session" "this" {
  for_each = toset(var.network_interface_ids)

  description              = "${var.name}: ${each.key} to rebuilder"
  network_interface_id     = each.key
  session_number           = var.session_number
  virtual_network_id       = var.vni
  packet_length            = var.packet_length
  traffic_mirror_filter_id = aws_ec2_traffic_mirror_filter.this.id
  traffic_mirror_target_id = aws_ec2_traffic_mirror_target.this.id

  tags = merge(var.tags, { Name = "${var.name}-${each.key}" })

  # The filter's rules must exist before packets are matched against it.
  depends_on = [aws_ec2_traffic_mirror_filter_rule.this]
}
